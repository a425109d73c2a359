"""Internationalisation items: `${utf8_*_alabel:}` (RFC 5890/5891 via the idna library,
RFC 3492 Punycode for local parts) and `${imapfolder{name}{sep}{specials}}` (RFC 3501
modified UTF-7, Courier's Maildir folder names).

Every function returns text or raises ExpansionFailed with Exim's wording where Exim has one.
Behaviour follows Exim 4.96 (`exim -be` of Debian's exim4-daemon-heavy), checked in
tests/integration/test_exim_be.py:

- domain to A-label: text without non-ASCII characters is returned unchanged (Exim does not
  check it); otherwise UTS 46 mapping (so `Bücher.EXAMPLE` -> `xn--bcher-kva.example`),
  IDNA 2008, empty labels kept (`bücher..example` -> `xn--bcher-kva..example`).
- domain from A-label: each label that starts with a lower-case `xn--` is decoded, other
  labels are kept as written; a label that does not decode fails the expansion.
- local part to A-label: Punycode with an `xn--` prefix (case of ASCII letters kept);
  all-ASCII text is unchanged. From A-label: the text must start with `xn--`.
"""

from __future__ import annotations

import base64

from .. import lazy
from ..errors import ExpansionFailed

idna = lazy.module("idna")     # ~3.5 ms to import; only ${utf8_domain_*} need it

_ACE = "xn--"


def _valid(text: str, what: str) -> str:
    """Fail the expansion on text that is not valid UTF-8 (bytes kept as lone surrogates by
    surrogateescape decoding), as Exim's conversions fail on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ExpansionFailed(f"{what}: the text is not valid UTF-8") from None
    return text


def domain_to_alabel(text: str) -> str:
    """`${utf8_domain_to_alabel:}`; fails on a name IDNA 2008 refuses."""
    if _valid(text, "utf8_domain_to_alabel").isascii():
        return text
    out: list[str] = []
    for label in text.split("."):
        if label == "" or label.isascii():
            out.append(label.lower() if label.isascii() else label)
            continue
        try:
            out.append(idna.encode(label, uts46=True).decode("ascii"))
        except (idna.IDNAError, UnicodeError) as exc:
            raise ExpansionFailed(f"error converting utf8 ({text[:80]}) to alabel: {exc}") from None
    return ".".join(out)


def domain_from_alabel(text: str) -> str:
    """`${utf8_domain_from_alabel:}`; fails on a malformed `xn--` label."""
    out: list[str] = []
    for label in _valid(text, "utf8_domain_from_alabel").split("."):
        if not label.startswith(_ACE):
            out.append(label)
            continue
        try:
            out.append(idna.decode(label))
        except (idna.IDNAError, UnicodeError):
            raise ExpansionFailed(f"error converting alabel ({text[:80]}) to utf8: Invalid input") from None
    return ".".join(out)


def localpart_to_alabel(text: str) -> str:
    """`${utf8_localpart_to_alabel:}`: `xn--` + Punycode of the local part."""
    if _valid(text, "utf8_localpart_to_alabel").isascii():
        return text
    return _ACE + text.encode("punycode").decode("ascii")


def localpart_from_alabel(text: str) -> str:
    """`${utf8_localpart_from_alabel:}`; fails without the `xn--` prefix or on bad Punycode."""
    if not text.startswith(_ACE):
        raise ExpansionFailed(f"error converting alabel ({text[:80]}) to utf8: bad alabel prefix")
    try:
        return text[len(_ACE):].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        raise ExpansionFailed(f"error converting alabel ({text[:80]}) to utf8: Invalid input") from None


def imapfolder(name: str, sep: str = "/", specials: str = "") -> str:
    """`${imapfolder{name}{sep}{specials}}`: a folder name in modified UTF-7 for Maildir.

    Each `sep` becomes `.` (a run of them one `.`; one leading `sep` and a trailing `.` are
    dropped); characters in `specials` and every character outside printable ASCII are
    Base64-encoded (`&...-`, UTF-16, `,` for `/`); `&` is written `&-`; a `.` or `/` that is
    neither the separator nor special fails the expansion ("illegal character").
    """
    if len(sep) != 1:
        raise ExpansionFailed(f'IMAP folder separator must be one character, found "{sep}"')
    _valid(name, "imapfolder")
    if name.startswith(sep):
        name = name[1:]
    out: list[str] = []
    run: list[str] = []          # characters waiting to be Base64-encoded
    last_sep = False

    def flush() -> None:
        if run:
            raw = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            run.clear()

    for c in name:
        if not " " <= c <= "~" or (c in specials and c != sep):
            run.append(c)
            last_sep = False
            continue
        if c in "./" and c != sep:
            raise ExpansionFailed(f"imapfolder: illegal character '{c}'")
        flush()
        if c == sep:
            if not last_sep:
                out.append(".")
            last_sep = True
        else:
            out.append("&-" if c == "&" else c)
            last_sep = False
    flush()
    text = "".join(out)
    return text[:-1] if text.endswith(".") else text
