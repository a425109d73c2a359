"""`aclmilter import-exim` on a configuration exercising the reader and the translator
(tests/fixtures/exim/import/). Real Exim agreement is in tests/integration/test_exim_oracle.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from aclmilter.eximimport import translate
from aclmilter.eximimport.reader import Reader
from aclmilter.policy.loader import load_text

CONF = Path(__file__).resolve().parent.parent / "fixtures" / "exim" / "import" / "main.conf"


def test_reader_follows_include_ifdef_macros_and_continuations() -> None:
    r = Reader()
    lines = r.read(str(CONF))
    texts = [ln.text for ln in lines]
    assert "domainlist local_domains = example.test : *.example.test" in texts     # .else + continuation
    assert not any("never.test" in t for t in texts)                             # .ifdef not taken
    assert "deny    hosts = 203.0.113.66" in texts                                # macro substituted
    where = {ln.text: ln.where for ln in lines}
    assert where["acl_check_data:"].endswith("acls.conf:15")                     # .include keeps file:line
    assert r.report == []


def test_translation_loads_and_keeps_every_statement() -> None:
    result = translate(str(CONF))
    policy = load_text(result.yaml, "imported.yaml")                            # `aclmilter check` accepts it
    assert set(policy.acls) == {"mail", "data", "rcpt"}
    assert result.statements == 9 + 1
    data = yaml.safe_load(result.yaml)
    assert data["settings"]["primary_hostname"] == "mx.example.test"
    assert data["settings"]["spf_guess"] == "v=spf1 a/24 mx/24 -all"
    assert data["settings"]["proxy_required_hosts"] == "198.51.100.1"         # hosts_proxy
    assert data["domainlist"]["local_domains"] == "example.test : *.example.test"
    assert data["hostlist"]["relay_from"] == "127.0.0.1 : 192.0.2.0/24"        # _cache dropped
    assert data["acl"]["rcpt"] == ["deny"]                                       # Exim's default for no RCPT ACL
    mail = data["acl"]["mail"]
    assert mail[0] == {"deny": [{"senders": "+bad_senders"}, {"message": "sender refused\\nsecond line"}]}
    assert mail[2] == {"warn": [{"set": "acl_c_seen = yes"}, {"set": "acl_m_x = *@x"}]}   # repeated set
    # quoting: an alias-looking value and a backslash survive the round trip
    assert "acl_m_x = *@x" in yaml.safe_dump(mail)
    report = "\n".join(result.report)
    for expected in ("main.conf:14: main option smtp_accept_max: MTA-only",
                     "main.conf:17: acl_smtp_mime: a milter has no step",
                     "acls.conf:6: warn statement not translated", "no mysql lookups",
                     "acls.conf:11: accept statement not translated", "'verify'",
                     "acls.conf:16: deny statement not translated", "'malware'",
                     "acls.conf:20: ACL acl_check_mime is not used"):
        assert expected in report, report
    # every statement is either in the policy or named in the report
    kept = sum(len(v) for k, v in data["acl"].items() if k != "rcpt")
    dropped = sum(1 for line in result.report if "statement not translated" in line)
    assert kept + dropped == result.statements - 1        # acl_check_mime's accept is reported as unused
