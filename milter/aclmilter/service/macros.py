"""Which MTA macros aclmilter asks for at each stage (sent with smfi_setsymlist).

Only macros the session reads are asked for: every one costs the MTA formatting and libmilter
parsing on every message. The connect list carries the client/listener identity
(`{daemon_name}` tells a PROXY listener apart; `v` tells Postfix from Sendmail). The queue id
`i` is requested from MAIL on, but Postfix only has it after the first accepted RCPT, so the
session takes it when it appears.
"""

from __future__ import annotations

import milter

CONNECT = ("{client_addr}", "{client_port}", "{client_name}", "{client_ptr}",
           "{daemon_name}", "{daemon_addr}", "{daemon_port}", "j", "v")
HELO = ("{tls_version}", "{cipher}")
MAIL = ("i", "{auth_authen}", "{auth_type}")
RCPT = ("i",)
DATA = ("i",)
EOH = ("i",)
EOM = ("i",)

#: libmilter stage constant -> macros requested there.
BY_STAGE: dict[int, tuple[str, ...]] = {
    milter.M_CONNECT: CONNECT, milter.M_HELO: HELO, milter.M_ENVFROM: MAIL,
    milter.M_ENVRCPT: RCPT, milter.M_DATA: DATA, milter.M_EOH: EOH, milter.M_EOM: EOM,
}


#: libmilter stage constant -> the space-separated list smfi_setsymlist takes (built once).
SYMLISTS: dict[int, str] = {stage: " ".join(names) for stage, names in BY_STAGE.items()}


def collect(getsymval, names: tuple[str, ...]) -> dict[str, str]:  # noqa: ANN001 - ctx.getsymval
    """The values the MTA sent for `names` (missing macros are left out)."""
    out: dict[str, str] = {}
    for name in names:
        value = getsymval(name)
        if value is not None:
            out[name] = value
    return out
