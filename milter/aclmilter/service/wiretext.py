"""Text we hand back to pymilter (headers, replies, recipients) as something it can encode.

Envelope values keep their original 8-bit bytes as lone surrogates (surrogateescape), and a
policy may copy them into a header or a reply text (`X-Helo: $sender_helo_name`). pymilter
encodes every str as strict UTF-8, so such a value would make the edit or the reply raise —
turning a `warn` that adds a header into an internal error (451). Those bytes are written as
`\\xNN` escapes instead: plain ASCII, visibly not what the sender claimed to be text.
"""

from __future__ import annotations

from typing import Any


def safe_text(value: Any) -> Any:
    """`value` with undecodable bytes written as \\xNN; non-text values unchanged."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value
