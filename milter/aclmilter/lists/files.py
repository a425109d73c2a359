"""Reading policy-named files (list files, lookup files) through one thread-safe parse cache.

A file is re-parsed only when its (mtime, size) changes, so an edited file takes effect on
the next use, as in Exim, without re-reading it for every message. A file that cannot be
read raises FileUnreadable naming the file: the statement ends in ERROR (Exim treats it as a
configuration failure), the service never crashes.
File names only ever come from policy text; nothing here builds a path from message data.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from ..errors import FileUnreadable, LookupDefer

#: Files larger than this are refused (a policy file list, not a database).
MAX_FILE_BYTES = 64 * 1024 * 1024

_lock = threading.Lock()
_cache: dict[tuple[str, str], tuple[int, int, Any]] = {}


def cached(path: str, parser_name: str, parse: Callable[[str], Any]) -> Any:
    """Return parse(text of path), cached per (path, parser) until the file changes."""
    try:
        st = os.stat(path)
        if st.st_size > MAX_FILE_BYTES:
            raise LookupDefer(f"file {path} is larger than {MAX_FILE_BYTES} bytes")
        key = (path, parser_name)
        with _lock:
            hit = _cache.get(key)
        if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise FileUnreadable(f"cannot read file {path}: {exc.strerror or exc}") from None
    value = parse(text)
    with _lock:
        _cache[key] = (st.st_mtime_ns, st.st_size, value)
    return value


def _list_lines(text: str) -> tuple[str, ...]:
    """Items of a list file: one per line; blank lines and `#` comments (at the start of a
    line or after whitespace) are dropped."""
    out: list[str] = []
    for line in text.splitlines():
        cut = len(line)
        for k, c in enumerate(line):
            if c == "#" and (k == 0 or line[k - 1].isspace()):
                cut = k
                break
        item = line[:cut].strip()
        if item:
            out.append(item)
    return tuple(out)


def list_file(path: str) -> tuple[str, ...]:
    """The items of a `/path` list item (raises LookupDefer if unreadable)."""
    items: tuple[str, ...] = cached(path, "list", _list_lines)
    return items
