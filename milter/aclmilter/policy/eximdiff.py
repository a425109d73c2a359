"""Load-time warnings: statements whose Exim meaning a milter cannot give, and missing files.

`aclmilter check` prints them (they do not refuse the policy). Each names the statement by
file:line. What they say is measured against real Postfix 3.7 and Exim 4.96 (docs/policy.md,
"What differs from Exim, and why"; tests/integration/test_exim_oracle.py):
- a refusal in the `connect` or `helo` ACL is not given at that command under Postfix: a
  5xx at connect turns the banner into 554, and the ACL's reply comes at every MAIL of the
  connection (for HELO even after a later acceptable HELO);
- `message` on `accept` sets the text of a 2xx reply in Exim; a milter cannot;
- `drop` is 521 (421 for a 4xx) under Postfix, whatever code `message` gives;
- a list or lookup file that does not exist now: every statement using it will end in
  ERROR (451) until it exists.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator

from ..outcome import Verb
from .model import Policy, Statement

_REFUSING = frozenset({Verb.DENY, Verb.DEFER, Verb.DROP, Verb.REQUIRE, Verb.DISCARD})
#: `lsearch;/file` list items, `lsearch{/file}` lookups, and list items that are a bare path
_LIST_FILE = re.compile(r"(?:^|[:;\s])(?:[a-z]+\*?@?;\s*)?(/[^\s:;$}]+)")
_LOOKUP_FILE = re.compile(r"[a-z]+\*?@?\{\s*(/[^\s}$]+)\s*\}")


def _statements(policy: Policy, key: str) -> Iterator[Statement]:
    acl = policy.acls.get(key)
    return iter(acl.statements if acl else ())


def _files(text: str, is_list: bool) -> set[str]:
    found = set(_LOOKUP_FILE.findall(text))
    if is_list:
        for path in _LIST_FILE.findall(text):
            found.add(path)
    return found


def warnings(policy: Policy) -> list[str]:
    """Every warning for this policy, in file order."""
    out: list[tuple[str, int, str]] = []

    def warn(st_or_mark: Any, text: str) -> None:
        mark = getattr(st_or_mark, "mark", st_or_mark)
        out.append((mark.file, mark.line, f"{mark.file}:{mark.line}: warning: {text}"))

    for key, cmd in (("connect", "connect"), ("helo", "HELO")):
        for st in _statements(policy, key):
            if st.verb is not Verb.DROP and (st.verb in _REFUSING or any(u.name == "endpass" for u in st.items)):
                warn(st, f"{st.verb.value} in the {key} ACL: under Postfix the client does not get this "
                         f"refusal at {cmd} but at every MAIL of the connection"
                         + (" (a 5xx also turns the banner into 554)" if key == "connect" else
                            ", even after a later HELO that passes"))
    seen_files: set[str] = set()
    for acl in policy.acls.values():
        for st in acl.statements:
            names = [u.name for u in st.items]
            if st.verb is Verb.ACCEPT and "message" in names and acl.name not in ("connect", "predata"):
                warn(st, "message on accept: Exim sends it as the text of the 2xx reply; a milter cannot "
                         "set a 2xx text, so it is not sent")
            if st.verb is Verb.DROP:
                warn(st, "drop: under Postfix the reply code is 521 (421 for a 4xx message) and the "
                         "connection is closed; the code in `message` is not used")
            for use in st.items:
                is_list = use.entry.arg.name == "LIST"
                for path in sorted(_files(use.text, is_list)):
                    if path not in seen_files and not os.path.exists(path):
                        seen_files.add(path)
                        warn(use, f"{use.name}: file {path} does not exist: every statement using it "
                                  "ends in ERROR (451) until it does")
    for kind, named in policy.lists.items():
        for name, spec in named.items():
            for path in sorted(_files(getattr(spec, "text", ""), True)):
                if path not in seen_files and not os.path.exists(path):
                    seen_files.add(path)
                    out.append((policy.file, 0, f"{policy.file}: warning: {kind} {name}: file {path} does not "
                                                "exist: every statement using it ends in ERROR (451) until it does"))
    return [text for _f, _l, text in sorted(out, key=lambda t: (t[0], t[1]))]
