"""The authserv-id of an Authentication-Results value, in the form it is compared in.

RFC 8601 §2.2: `authres-header = "Authentication-Results:" [CFWS] authserv-id [CFWS
authres-version] ( no-result / 1*resinfo ) [CFWS] CRLF`, and authserv-id is a `value`
(RFC 2045: a token or a quoted-string). A forger can therefore write our id quoted, with a
trailing dot (the DNS root), in another case, folded, or after a comment; all of those are
still our id and the field must be removed (RFC 8601 §5). This reads the id the way the
grammar does, without a full A-R parser, so a field too broken for `authres` is still judged.
"""

from __future__ import annotations

_WSP = " \t\r\n"
_STOP = _WSP + ';("'


def _skip_cfws(text: str, i: int) -> int:
    """Index of the first character after white space and (nested) comments from i."""
    depth = 0
    while i < len(text):
        c = text[i]
        if depth:
            if c == "\\":
                i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
        elif c == "(":
            depth = 1
        elif c not in _WSP:
            return i
        i += 1
    return i


def raw_authserv_id(value: str) -> str | None:
    """The authserv-id as written (quotes removed, quoted-pairs resolved); None if absent."""
    i = _skip_cfws(value, 0)
    if i >= len(value):
        return None
    if value[i] == '"':
        out = []
        i += 1
        while i < len(value) and value[i] != '"':
            if value[i] == "\\" and i + 1 < len(value):
                i += 1
            if value[i] not in "\r\n":         # folding inside the quotes is not content
                out.append(value[i])
            i += 1
        return "".join(out)
    j = i
    while j < len(value) and value[j] not in _STOP:
        j += 1
    return value[i:j] or None


def normalize(authserv_id: str) -> str:
    """Compare form: outer white space and one trailing dot removed, lower case."""
    text = authserv_id.strip()
    if text.endswith("."):
        text = text[:-1]
    return text.lower()


def authserv_id(value: str) -> str | None:
    """The compare form of the authserv-id of an A-R value, or None if it has none."""
    raw = raw_authserv_id(value)
    if raw is None:
        return None
    return normalize(raw) or None


def claims(value: str, our_id: str) -> bool:
    """True if an A-R value's authserv-id is our_id in any spelling the grammar allows.

    An id written as `<ours>/<jobid>` (OpenDMARC's AuthservIDWithJobID) is ours too. Forged-
    header removal and the load-time refusal of `add_header` both ask this, so they agree.
    """
    ours = normalize(our_id)
    got = authserv_id(value)
    return got is not None and (got == ours or got.startswith(ours + "/"))
