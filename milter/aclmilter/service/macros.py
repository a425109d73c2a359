"""Which MTA macros aclmilter asks for at each stage (sent with smfi_setsymlist).

Only macros the session reads are asked for: every one costs the MTA formatting and libmilter
parsing on every message. The connect list carries the client/listener identity
(`{daemon_name}` tells a PROXY listener apart; `v` tells Postfix from Sendmail). The queue id
`i` is asked for at MAIL and comes with the MTA's default lists after that (see
SYMLIST_STAGES); Postfix only has it after the first accepted RCPT, so the session takes it
when it appears.
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


#: Stages whose list is sent with smfi_setsymlist. From RCPT on only `i` is read, and both
#: Postfix (`milter_rcpt/data/end_of_header/end_of_data_macros`) and Sendmail send it by
#: default (Sendmail at MAIL, which libmilter keeps for the message), so those stages keep the
#: MTA's lists: pymilter releases and re-takes the GIL around every setsymlist call, and with
#: twenty connections at once each call cost ~8 us of hand-over (measured: 70 -> 11 us per
#: negotiation without any). CONNECT must be asked for ({client_*} are not in Postfix's
#: default); HELO and MAIL carry TLS and AUTH facts, which must not depend on an
#: administrator's trimmed defaults.
SYMLIST_STAGES = (milter.M_CONNECT, milter.M_HELO, milter.M_ENVFROM)

#: libmilter stage constant -> the space-separated list smfi_setsymlist takes (built once).
SYMLISTS: dict[int, str] = {stage: " ".join(BY_STAGE[stage]) for stage in SYMLIST_STAGES}


def collect(getsymval, names: tuple[str, ...]) -> dict[str, str]:  # ctx.getsymval
    """The values the MTA sent for `names` (missing macros are left out).

    A value that is not UTF-8 (an 8-bit SASL login name, say) is decoded with surrogateescape,
    like every envelope value, instead of failing the callback.
    """
    out: dict[str, str] = {}
    for name in names:
        try:
            value = getsymval(name)
        except UnicodeDecodeError as exc:    # pymilter decodes strictly: keep the bytes
            value = exc.object.decode("utf-8", "surrogateescape") if isinstance(exc.object, bytes) else None
        if value is not None:
            out[name] = value
    return out
