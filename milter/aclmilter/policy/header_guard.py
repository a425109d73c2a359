# SPDX-License-Identifier: GPL-3.0-or-later
"""Load-time checks of `add_header` texts that would write a header the service writes itself,
or write one twice.

- An Authentication-Results field with our authserv-id: with `settings.authserv_id` set, the
  service already inserts one after the DATA ACL (and removes every incoming one that
  claims our id, RFC 8601 §5); a second one from the policy would give every message two
  fields with our id, which no reader can tell apart. `$dmarc_ar_header` is such a field.
- `Name: $spf_received`: `$spf_received` is itself a complete `Received-SPF: ...` header (the
  seed's definition), so this would write `Name: Received-SPF: ...`.

Returns problems as (offset in the text, message); the loader turns them into
file:line:column errors, so `aclmilter check` refuses the policy before it serves.
"""

from __future__ import annotations

import re
from typing import Any

from ..actions import HeaderPosition
from ..checks.authserv_id import claims as claims_authserv_id

_PREFIXES = tuple(sorted((p.value for p in HeaderPosition), key=len, reverse=True))
_NEW_LINE = re.compile(r"\n(?![ \t])")
_NAME = re.compile(r"^[!-9;-~]+\Z")
_AR_VARIABLE = re.compile(r"\$\{?dmarc_ar_header\b")
_SPF_RECEIVED_START = re.compile(r"^\$(?:spf_received|\{spf_received\})(?![A-Za-z0-9_])")


def _blocks(text: str) -> list[tuple[int, str, str]]:
    """(offset, name, value) of each `Name: value` block of add_header text."""
    start = 0
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            start = len(prefix)
            break
    out = []
    pos = start
    for block in _NEW_LINE.split(text[start:]):
        name, sep, value = block.partition(":")
        if sep and _NAME.match(name.strip()):
            out.append((pos, name.strip(), value.strip()))
        pos += len(block) + 1
    return out


def problems(text: str, settings: dict[str, Any]) -> list[tuple[int, str]]:
    """The reasons an add_header text must be refused at load (see module doc); [] if none."""
    found: list[tuple[int, str]] = []
    our_id = str(settings.get("authserv_id") or "")
    automatic = (f"settings.authserv_id is {our_id!r}, so an Authentication-Results header with "
                 "that authserv-id is already added automatically after the DATA ACL (with spf=, "
                 "dkim= and dmarc=); a second one would be indistinguishable from it. Remove this "
                 "add_header, or unset settings.authserv_id to write the header yourself")
    if our_id:
        m = _AR_VARIABLE.search(text)
        if m:
            found.append((m.start(), f"add_header: $dmarc_ar_header: {automatic}"))
    for offset, name, value in _blocks(text):
        if our_id and name.lower() == "authentication-results" and claims_authserv_id(value, our_id) \
                and not _AR_VARIABLE.search(value):
            found.append((offset, f"add_header: {automatic}"))
        if _SPF_RECEIVED_START.match(value):
            found.append((offset, f"add_header: $spf_received is already a complete header "
                                  f"(`Received-SPF: ...`), so this writes `{name}: Received-SPF: ...`; "
                                  "write `:at_start:$spf_received`, or use $spf_received_value "
                                  "after a header name of your own"))
    return found
