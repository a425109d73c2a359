"""Organizational Domain lookup through a Public Suffix List file (RFC 7489 §3.2).

The list is read with publicsuffix2 from `settings.dmarc_tld_file` (publicsuffix2's bundled
copy when unset) and cached by
(path, mtime), so replacing the file takes effect without a restart and an unchanged file
is parsed once. Built as the shared service `dmarc_psl`.
"""

# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from .. import lazy
from ..services import register_factory

# publicsuffix2 (and its urllib.request) load with the first list, not by `aclmilter check`
if TYPE_CHECKING:     # the real module for the type checker; at run time it loads on first use
    import publicsuffix2
else:
    publicsuffix2 = lazy.module("publicsuffix2")


_REMEMBERED_SUFFIXES = 10_000


class PslUnavailable(Exception):
    """The configured PSL file cannot be read (configuration problem, not a DNS problem)."""


class PslCache:
    """Thread-safe holder of the parsed PSL, re-read when the file's mtime changes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[str, float] | None = None
        self._psl: "publicsuffix2.PublicSuffixList | None" = None
        # domain -> public suffix under the current list; a new dict with every new list
        self._suffixes: dict[str, str] = {}

    def _current(self) -> "tuple[publicsuffix2.PublicSuffixList, dict[str, str]]":
        """The list in force and the suffixes already looked up in it."""
        if not self.path:
            # No file configured: publicsuffix2's bundled list, parsed once.
            with self._lock:
                if self._psl is None:
                    self._psl = publicsuffix2.PublicSuffixList()
                return self._psl, self._suffixes
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            raise PslUnavailable(f"cannot read {self.path}: {exc.strerror}") from None
        key = (self.path, mtime)
        with self._lock:
            if self._key != key:
                with open(self.path, encoding="utf-8") as fh:
                    self._psl = publicsuffix2.PublicSuffixList(psl_file=fh)
                self._key = key
                self._suffixes = {}
            return self._psl, self._suffixes

    def public_suffix(self, domain: str) -> str:
        """Return the public suffix of `domain` (the implicit `*` rule applies to unlisted TLDs)."""
        domain = domain.lower().rstrip(".")
        psl, known = self._current()
        suffix = known.get(domain)
        if suffix is None:
            # publicsuffix2 walks its trie label by label; most mail comes from few domains
            suffix = psl.get_tld(domain, strict=True) or domain.rpartition(".")[2]
            if len(known) >= _REMEMBERED_SUFFIXES:
                known.clear()
            known[domain] = suffix
        return suffix

    def org_domain(self, domain: str) -> str:
        """Return the Organizational Domain: the public suffix plus one label.

        A name that is itself a public suffix is its own organizational domain (nothing
        can be cut from it); "d=com" therefore never aligns with "example.com".
        """
        domain = domain.lower().rstrip(".")
        suffix = self.public_suffix(domain)
        if domain == suffix or not domain.endswith("." + suffix):
            return domain
        head = domain[: -len(suffix) - 1]
        return f"{head.rpartition('.')[2]}.{suffix}"


def _factory(settings: dict, services: Any) -> PslCache:
    return PslCache(settings.get("dmarc_tld_file"))


register_factory("dmarc_psl", _factory)
