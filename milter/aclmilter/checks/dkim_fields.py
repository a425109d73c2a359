# SPDX-License-Identifier: GPL-3.0-or-later
"""The milter's header list in the bytes dkimpy verifies, without a message to re-parse.

Postfix hands the milter each header field as (name, value), with the one space after the
colon removed unless SMFIP_HDR_LEADSPC was negotiated. dkimpy wants a message: the DKIM check
used to write the fields back into a header block and let dkimpy's `rfc822_parse` split it
again, about 5 % of an authenticated message's instructions. `header_fields` gives the list
that parse would give, directly, for every field whose parse cannot depend on dkimpy's own
rules; for any other field it returns None and the caller builds and parses the block as before.
tests/unit/test_dkim_fields.py compares the two on generated fields.
"""

from __future__ import annotations

import re

# A name dkimpy reads the same way: printable ASCII without the colon (its pattern stops at
# the first colon and allows nothing outside \x21-\x7e).
_PLAIN_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+\Z")
# A line break that is not folding: dkimpy would start a new field there, or end the block.
_NOT_FOLDING = re.compile(rb"\r\n(?![ \t])")


def field_bytes(name: str, value: str, leading_space: str = "auto") -> tuple[bytes, bytes]:
    """(name, value) as written into the header block: the leading space restored (see
    `dkim.build_message` for `leading_space`), line ends as CRLF, non-UTF-8 bytes as received."""
    if leading_space == "add" or (leading_space == "auto" and value[:1] not in (" ", "\t")):
        value = " " + value
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape")


def header_fields(headers: list[tuple[str, str]], leading_space: str = "auto") -> list[list[bytes]] | None:
    """dkimpy's [name, value + CRLF] list for these fields, or None when one of them has a
    name outside printable ASCII, a colon in its name, or a line break not followed by white
    space (then only dkimpy's parse of the built block says what it is)."""
    out: list[list[bytes]] = []
    for name, value in headers:
        raw_name, raw_value = field_bytes(name, value, leading_space)
        if not _PLAIN_NAME.match(raw_name) or (b"\r\n" in raw_value and _NOT_FOLDING.search(raw_value)):
            return None
        out.append([raw_name, raw_value + b"\r\n"])     # lists, as dkimpy's own parse makes
    return out
