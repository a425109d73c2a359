"""Metrics and the message log line, through real Postfix: a known traffic mix, then
/metrics scraped and every log line parsed with a strict logfmt parser.

Every message and every refused transaction must be counted exactly once, with the words of
its log line; every check once per message by result; dependencies (DNS, dccifd) as up.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.aclmilterd import AclMilterd
from tests.harness.fake_dccifd import FakeDccifd
from tests.harness.postfix import postfix_instance, simple_message, world_traversable_dir
from tests.harness.procs import free_port
from tests.harness.recording_dns import RecordingDns
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

SENDER = "alice@example.org"

POLICY = """\
settings:
  primary_hostname: mx.test.example
  dns: {{nameservers: ["{dns}"], timeout: 2, lifetime: 2}}
  dccifd_address: "{dcc}"
acl:
  mail:
    - deny: {{senders: "*@mailreject.example", message: "550 5.7.1 sender refused"}}
    - warn: {{spf: "*"}}
    - accept
  rcpt:
    - drop: {{local_parts: dropme, message: "550 5.7.1 go away"}}
    - defer: {{local_parts: rcptdefer, message: "451 4.7.1 try later"}}
    - accept: {{local_parts: "!rcptdeny"}}
  data:
    - warn: {{dcc: "*/defer_ok"}}
    - deny: {{condition: "${{if match{{$h_subject:}}{{datadeny}}}}", message: "550 5.7.1 refused"}}
    - accept
  deliver:
    - discard: {{local_parts: eomdelete}}
    - accept
"""
#: policy lines (1-based) of the statements that decide in the mix
MAIL_DENY, RCPT_DROP, RCPT_DEFER, RCPT_END, DATA_DENY, DATA_ACCEPT = 7, 11, 12, 10, 16, 17


# ---- a strict logfmt parser ------------------------------------------------------------------
_PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\\x00-\x1f]|\\["\\nrt]|\\u[0-9a-f]{4})*"|[^\s="\\\x00-\x1f]+)(?: |$)')
_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def parse_logfmt(line: str) -> dict[str, str]:
    """key=value pairs separated by one space; a value is bare (no space, =, quote, backslash
    or control character) or double-quoted with \\" \\\\ \\n \\r \\t \\uXXXX escapes. Anything
    else — a stray space, an unquoted space inside a value, a repeated key — is an error."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        if m is None:
            raise ValueError(f"not logfmt at column {pos}: {line[pos:pos + 40]!r}")
        key, raw = m.group(1), m.group(2)
        if key in out:
            raise ValueError(f"repeated key {key!r}")
        if raw.startswith('"'):
            raw = re.sub(r'\\(u[0-9a-f]{4}|.)',
                         lambda e: chr(int(e.group(1)[1:], 16)) if e.group(1)[0] == "u" else _UNESCAPE[e.group(1)],
                         raw[1:-1])
        out[key] = raw
        pos = m.end()
    if line.endswith(" "):
        raise ValueError("trailing space")
    return out


def test_the_logfmt_parser_is_strict() -> None:
    assert parse_logfmt('a=1 b="x y" c="q\\"\\\\"') == {"a": "1", "b": "x y", "c": 'q"\\'}
    for bad in ("a=1  b=2", "a=x y", "a=1 a=2", 'a="open', "a=1 ", "a=b=c"):
        with pytest.raises(ValueError):
            parse_logfmt(bad)


# ---- the service under test ------------------------------------------------------------------
@pytest.fixture(scope="module")
def world() -> Iterator[dict]:
    work = world_traversable_dir("aclmilter-ops-")
    try:
        with RecordingDns() as dns_server, FakeDccifd.tcp("127.0.0.1") as dcc, Sink() as sink:
            policy = work / "policy.yaml"
            policy.write_text(POLICY.format(dns=dns_server.nameserver, dcc=dcc.address))
            port = free_port()
            d = AclMilterd(policy, "inet", workdir=work / "d", metrics_port=port)
            d.workdir.mkdir(mode=0o755)
            with d, postfix_instance(sink.port, milter=d.postfix_spec, root=work / "pf") as pf:
                yield {"pf": pf, "d": d, "sink": sink, "port": port, "policy": policy, "dcc": dcc}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def samples(scraped: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in scraped.items() if n == name and v}


def test_a_known_traffic_mix_is_counted_exactly_and_logged_in_logfmt(world: dict) -> None:
    pf, d, sink = world["pf"], world["d"], world["sink"]
    policy = str(world["policy"])
    sent = {
        "accept": [pf.send(SENDER, [f"ok{i}@example.test"], simple_message(subject=f"m{i}")) for i in range(3)],
        "mixed": [pf.send(SENDER, ["rcptdeny@example.test", "ok9@example.test", "eomdelete@example.test"],
                          simple_message())],
        "datadeny": [pf.send(SENDER, ["ok5@example.test"], simple_message(subject="datadeny"))],
        "rcptdeny": [pf.send(SENDER, ["rcptdeny@example.test"], simple_message()) for _ in range(2)],
        "rcptdefer": [pf.send(SENDER, ["rcptdefer@example.test"], simple_message())],
        "mailreject": [pf.send("x@mailreject.example", ["ok6@example.test"], simple_message())],
        "drop": [pf.send(SENDER, ["dropme@example.test"], simple_message())],
    }
    for r in sent["accept"] + sent["mixed"]:
        assert r.accepted, r
    assert sent["datadeny"][0].data[0] == 550
    assert [r.rcpt["rcptdeny@example.test"][0] for r in sent["rcptdeny"]] == [550, 550]
    assert sent["rcptdefer"][0].rcpt["rcptdefer@example.test"][0] == 451
    assert sent["mailreject"][0].mail[0] == 550
    assert sent["drop"][0].rcpt["dropme@example.test"][0] == 521 and sent["drop"][0].disconnected
    sink.wait_for_rcpt("ok9@example.test")

    # ten messages or transactions: ten lines (the last ones are written when Postfix
    # closes the milter connection); the count is made before the line is written
    lines = [ln.split(" INFO ", 1)[1] for ln in d.wait_log(r"[^\n]* INFO qid=[^\n]*", count=10)]
    assert len(lines) == 10, lines
    parsed = [parse_logfmt(ln) for ln in lines]
    for rec in parsed:
        assert list(rec)[:12] == ["qid", "client", "helo", "from", "to", "decision", "where",
                                  "spf", "dkim", "dmarc", "dcc", "prx"], rec
        assert rec["where"] != "no ACL"
    by_qid = {rec["qid"]: rec for rec in parsed}
    for r in sent["accept"]:
        rec = by_qid[r.queue_id]
        assert (rec["decision"], rec["where"]) == ("accept", f"{policy}:{DATA_ACCEPT}")
        assert (rec["spf"], rec["dkim"], rec["dmarc"], rec["dcc"], rec["prx"]) == ("none", "-", "-", "A", "-")
    mixed = by_qid[sent["mixed"][0].queue_id]
    assert mixed["to"] == "<ok9@example.test>,<eomdelete@example.test>"
    refused = sorted((rec["decision"], rec["where"]) for rec in parsed if rec["decision"] != "accept")
    assert refused == sorted([
        ("reject", f"{policy}:{DATA_DENY}"),
        ("reject_at_mail", f"{policy}:{MAIL_DENY}"),
        ("reject_at_rcpt", f"{policy}:{RCPT_END} (implicit deny at end of ACL rcpt)"),
        ("reject_at_rcpt", f"{policy}:{RCPT_END} (implicit deny at end of ACL rcpt)"),
        ("tempfail_at_rcpt", f"{policy}:{RCPT_DEFER}"),
        ("drop_at_rcpt", f"{policy}:{RCPT_DROP}"),
    ])
    # the value with spaces was quoted in the raw line
    assert any(f'where="{policy}:{RCPT_END} (implicit deny at end of ACL rcpt)"' in ln for ln in lines)

    scraped = scrape(world["port"])
    assert samples(scraped, "aclmilter_messages_total") == {
        (("decision", "accept"), ("stage", "data")): 4.0,
        (("decision", "reject"), ("stage", "data")): 1.0,
        (("decision", "reject"), ("stage", "rcpt")): 2.0,
        (("decision", "tempfail"), ("stage", "rcpt")): 1.0,
        (("decision", "reject"), ("stage", "mail")): 1.0,
        (("decision", "drop"), ("stage", "rcpt")): 1.0,
    }
    # SPF ran at MAIL for the 9 transactions not refused there; DCC for the 5 that reached DATA
    assert samples(scraped, "aclmilter_check_results_total") == {
        (("check", "spf"), ("result", "none")): 9.0,
        (("check", "dcc"), ("result", "A")): 5.0,
    }
    assert samples(scraped, "aclmilter_check_seconds_count") == {
        (("check", "spf"),): 9.0, (("check", "dcc"),): 5.0}
    # dependency health: dccifd asked once per message that reached DATA, DNS up, no errors
    assert samples(scraped, "aclmilter_dependency_up") == {(("dependency", "dccifd"),): 1.0,
                                                           (("dependency", "dns"),): 1.0}
    assert samples(scraped, "aclmilter_dependency_errors_total") == {}
    assert scraped[("aclmilter_dependency_seconds_count", (("dependency", "dccifd"),))] == 5.0
    assert len(world["dcc"].requests) == 5
