"""Forged Authentication-Results in every spelling of our authserv-id are removed (issue 24
point 6), proven through a real Postfix: quoted, trailing dot, other case, folded, comment
first. Fields of other authserv-ids are kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import Postfix, simple_message, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

POLICY = """\
settings:
  primary_hostname: mx.test.example
  authserv_id: mx.test.example
acl:
  data:
    - accept
"""

FORGED = [
    'Authentication-Results: "mx.test.example"; dkim=pass header.d=forged-quoted.example',
    "Authentication-Results: mx.test.example.; dkim=pass header.d=forged-dot.example",
    "Authentication-Results: MX.Test.Example; dkim=pass header.d=forged-case.example",
    "Authentication-Results:\r\n\tmx.test.example;\r\n\tdkim=pass header.d=forged-folded.example",
    "Authentication-Results: (looks (nested) harmless) mx.test.example; dkim=pass header.d=forged-comment.example",
    'Authentication-Results: (c) "MX.test.example."; dkim=pass header.d=forged-all.example',
]
KEPT = "Authentication-Results: upstream.example; dkim=pass header.d=kept.example"


@pytest.fixture()
def workdir():
    d = world_traversable_dir("aclmilter-ar-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_forged_authresults_removed_through_postfix(workdir: Path) -> None:
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    (workdir / "d").mkdir(mode=0o755)
    with Sink() as sink, AclMilterd(policy, "unix", workdir=workdir / "d") as d:
        pf = Postfix(relay_port=sink.port, milter=d.postfix_spec, root=workdir / "pf")
        pf.start()
        try:
            msg = simple_message(subject="forged", extra_headers=[*FORGED, KEPT])
            r = pf.send("alice@example.org", ["bob@example.test"], msg)
            assert r.accepted, r
            got = sink.wait_for_rcpt("bob@example.test")
        finally:
            pf.stop()
    values = got.headers("Authentication-Results")
    assert not [v for v in values if "forged-" in v], values
    assert any("kept.example" in v for v in values), values
    # ours is the one at the top, with our id as written in the policy
    assert values[0].startswith("mx.test.example;"), values
    assert len(values) == 2, values
    assert "internal error" not in d.log()
