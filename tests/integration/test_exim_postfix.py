"""The dialogues of tests/fixtures/exim/cases.yaml through real Postfix + `aclmilter serve`
must get exactly what `aclmilter bh --mta postfix` says (reply codes of every command; full
texts of every refusal).

One Postfix, one sink and one milter for the module; each case imports its Exim
configuration, writes the policy the milter serves and reloads it (SIGUSR1). The client
address of the case is set with XCLIENT (Postfix then starts a new milter connection, as
for a new client), so host conditions see the case's address.
"""

from __future__ import annotations

import re
import shutil

import pytest

from aclmilter.bh import Mta
from tests.harness.aclmilterd import AclMilterd
from tests.harness.exim import main_options
from tests.harness.postfix import Postfix, world_traversable_dir
from tests.harness.sink import Sink
from tests.harness.smtpdialog import replay
from tests.harness.exim import dns53  # noqa: F401 (fixture)
from tests.integration.test_exim_oracle import CASES, DATA, MSG, _aclmilter_bh, group, imported

pytestmark = pytest.mark.integration


def comparable(lines: list[str]) -> list[tuple[str, tuple[str, ...] | None]]:
    """Codes of every reply; texts of refusals (queue ids, hostnames and EHLO lists aside)."""
    replies = group(lines)
    # the banner's text holds Postfix's own hostname
    return [(code, tuple(texts) if code[0] in "45" and i else None) for i, (code, texts) in enumerate(replies)]


@pytest.fixture(scope="module")
def lab():
    wd = world_traversable_dir("aclmilter-eximpf-")
    policy = wd / "policy.yaml"
    policy.write_text("acl: {}\n")
    with Sink() as sink:
        d = AclMilterd(policy, "unix", workdir=wd / "m")
        d.workdir.mkdir(mode=0o755)
        d.sock_path = d.workdir / "aclmilter.sock"
        d.log_path = d.workdir / "aclmilter.log"
        with d:
            pf = Postfix(relay_port=sink.port, milter=d.postfix_spec, root=wd / "pf", extra_main={
                "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
                "smtpd_relay_restrictions": "check_client_access static:OK, reject_unauth_destination",
            })
            pf.start()
            try:
                yield wd, d, pf
            finally:
                pf.stop()
    shutil.rmtree(wd, ignore_errors=True)


_generation = [0]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_postfix_gives_what_bh_says(case: dict, lab, request: pytest.FixtureRequest) -> None:
    wd, milterd, pf = lab
    cdir = wd / re.sub(r"[^A-Za-z0-9]+", "_", case["name"])
    cdir.mkdir(mode=0o755)
    for name, text in (case.get("files") or {}).items():
        (cdir / name).write_text(text)
        (cdir / name).chmod(0o644)
    conf = cdir / "exim.conf"
    conf.write_text(main_options(cdir) + case["config"].replace("{DIR}", str(cdir)))
    result = imported(conf, case, request)
    milterd.policy.write_text(result.yaml)
    milterd.reload()
    _generation[0] += 1
    milterd.wait_log(r"policy \S+ reloaded \(generation \d+\)", count=_generation[0])
    client = case.get("client", DATA["defaults"]["client"])
    dialogue = case["dialogue"].replace("{MSG}", MSG) + "\n"
    addr = f"IPV6:{client}" if ":" in client else client
    got = replay("127.0.0.1", pf.port, f"XCLIENT ADDR={addr}\n" + dialogue)
    got = got[1:]             # the banner before XCLIENT; XCLIENT's reply is the client's banner
    ours = _aclmilter_bh(milterd.policy, client, dialogue, Mta.POSTFIX)
    assert comparable(got) == comparable(ours), (
        "\npostfix:\n" + "\n".join(got) + "\naclmilter bh --mta postfix:\n" + "\n".join(ours) + "\n" + result.yaml)
