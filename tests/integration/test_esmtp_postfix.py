# SPDX-License-Identifier: GPL-3.0-or-later
"""Real Postfix passes MAIL/RCPT ESMTP parameters to the milter: $message_smtputf8, $dsn_ret,
$dsn_envid, $dsn_notify and $dsn_orcpt seen by the RCPT ACL, and an ${acl{}} item in a reply."""

from __future__ import annotations

import contextlib
import shutil
import smtplib

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import Postfix, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """
acl:
  describe:
    - accept: {message: "utf8=$message_smtputf8 ret=$dsn_ret envid=$dsn_envid notify=$dsn_notify orcpt=$dsn_orcpt"}
  rcpt:
    - deny: {message: "550 5.7.1 ${acl{describe}}"}
"""


@pytest.fixture(scope="module")
def postfix():
    workdir = world_traversable_dir("aclmilter-esmtp-")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    (workdir / "d").mkdir(mode=0o755)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(Sink())
        milterd = stack.enter_context(AclMilterd(policy, "unix", workdir=workdir / "d"))
        pf = Postfix(relay_port=sink.port, milter=milterd.postfix_spec, root=workdir / "pf")
        pf.start()
        stack.callback(pf.stop)
        yield pf
    shutil.rmtree(workdir, ignore_errors=True)


def _rcpt_reply(pf: Postfix, mail_options: list[str], rcpt_options: list[str]) -> tuple[int, str]:
    client = smtplib.SMTP("127.0.0.1", pf.port, timeout=60)
    try:
        client.ehlo("client.example.org")
        code, text = client.mail("jösé@example.org" if "SMTPUTF8" in mail_options else "a@example.org",
                                 mail_options)
        assert code == 250, (code, text)
        code, text = client.rcpt("rcpt@example.test", rcpt_options)
        return code, text.decode("utf-8", "replace")
    finally:
        with contextlib.suppress(Exception):
            client.quit()


def test_dsn_and_smtputf8_parameters_reach_the_acl(postfix: Postfix) -> None:
    code, text = _rcpt_reply(postfix, ["SMTPUTF8", "RET=HDRS", "ENVID=QQ+2B314"],
                             ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;orig+2Bx@example.test"])
    assert code == 550
    assert text == "5.7.1 utf8=yes ret=HDRS envid=QQ+314 notify=SUCCESS,DELAY orcpt=rfc822;orig+x@example.test"
    code, text = _rcpt_reply(postfix, [], [])
    assert (code, text) == (550, "5.7.1 utf8=no ret= envid= notify= orcpt=")
