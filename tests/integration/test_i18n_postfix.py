# SPDX-License-Identifier: GPL-3.0-or-later
"""Internationalised mail end to end: the corpus of tests/fixtures/i18n/corpus.py through a real
Postfix (smtputf8_enable = yes) -> aclmilter serve (Knot DNS, idnx.zone) -> SMTPUTF8 sink.

Each message is sent with SMTPUTF8 when its envelope or header holds UTF-8. The policy writes
SPF, DKIM and DMARC results into a header (delivered mail) or the 550 reply (refused mail:
`dmarc_status` reject or nofrom, as policies/examples/dmarc.yaml does); both are compared
with the RFC answers of the corpus.
"""

from __future__ import annotations

import re
import smtplib
from typing import Iterator

import dkim
import idna
import pytest

from tests.fixtures.dmarc.ctxhelp import KEY_SEL1, PSL
from tests.fixtures.i18n.corpus import CORPUS, Entry
from tests.harness.aclmilterd import AclMilterd
from tests.harness.postfix import postfix_instance, world_traversable_dir
from tests.harness.sink import Sink

pytestmark = pytest.mark.integration

RESULTS = "spf=$spf_result dkim=$dkim_verify_status dmarc=$dmarc_status from=$dmarc_from_domain"
POLICY = f"""
settings:
  authserv_id: mx.corpus.invalid
  primary_hostname: mx.corpus.invalid
  dmarc_tld_file: {{psl}}
  dns: {{{{nameservers: ["{{ns}}"], timeout: 2, lifetime: 4, budget: 10}}}}
acl:
  mail:
    - warn:
        spf: "*"
    - accept
  data:
    - warn:
        add_header: "X-Corpus: {RESULTS}"
    - deny:
        dmarc_status: "reject : nofrom"
        message: "5.7.1 {RESULTS}"
    - accept
"""

_RESULT = re.compile(r"spf=(\S*) dkim=(\S*) dmarc=(\S*) from=(\S*)")


@pytest.fixture(scope="module")
def world(knot_dns) -> Iterator[tuple[object, Sink]]:
    work = world_traversable_dir("i18n-e2e-")
    policy = work / "i18n.yaml"
    policy.write_text(POLICY.format(psl=PSL, ns=knot_dns.nameserver))
    with Sink(smtputf8=True) as sink, AclMilterd(policy, workdir=work) as milter:
        # The test client is 127.0.0.1; without local_header_rewrite_clients Postfix would treat
        # it as local and "repair" the From field (add a missing one, append @myorigin)
        # before the milter sees it, as it would not for mail from the Internet.
        with postfix_instance(sink.port, milter=milter.postfix_spec,
                              extra_main={"smtputf8_enable": "yes", "local_header_rewrite_clients": "",
                                          "always_add_missing_headers": "no"}) as pf:
            yield pf, sink


def build(entry: Entry) -> bytes:
    """The message of a corpus entry (CRLF), DKIM-signed by dkimpy when the entry says so."""
    head = [] if entry.from_ is None else [b"From: " + entry.from_]
    head += list(entry.extra)
    head += [b"To: <postmaster@corpus.invalid>", b"Subject: " + entry.subject,
             b"Message-ID: <" + entry.name.encode() + b"@corpus.invalid>", b"MIME-Version: 1.0",
             b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit"]
    raw = b"\r\n".join(head) + b"\r\n\r\n" + "Grüße, 山田\r\n".encode()
    if entry.sign:
        sig = dkim.sign(raw, b"sel1", entry.sign.encode(), KEY_SEL1, canonicalize=(entry.canon.encode(),) * 2,
                        include_headers=[b"from", b"to", b"subject", b"message-id"])
        raw = sig + raw
    if entry.tamper:
        raw = raw.replace(b"Subject: " + entry.subject, b"Subject: " + entry.subject + " (geändert)".encode())
    return raw


def send(port: int, entry: Entry, data: bytes) -> tuple[int, str]:
    """One SMTP transaction; SMTPUTF8 when anything is not ASCII. Returns the DATA reply."""
    utf8 = not (entry.mail_from.isascii() and entry.helo.isascii() and data.isascii())
    client = smtplib.SMTP(timeout=60)
    try:
        client.connect("127.0.0.1", port)
        client.command_encoding = "utf-8"           # a U-label EHLO name goes out as UTF-8
        client.ehlo(entry.helo)
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        code, text = client.mail(entry.mail_from, options)
        assert code == 250, (entry.name, code, text)
        code, text = client.rcpt("postmaster@corpus.invalid")
        assert code == 250, (entry.name, code, text)
        code, text = client.data(data)
        return code, text.decode("utf-8", "replace")
    except smtplib.SMTPDataError as exc:
        return exc.smtp_code, exc.smtp_error.decode("utf-8", "replace")
    finally:
        client.close()


def expected(entry: Entry) -> tuple[str, str, str, str]:
    e = entry.expect
    domain = e.from_domain
    if domain.startswith("idna:"):
        domain = idna.encode(domain[5:], uts46=True, transitional=False).decode("ascii")
    return e.spf, e.dkim, e.dmarc, domain


def test_corpus_size_and_coverage():
    names = {e.name for e in CORPUS}
    assert len(CORPUS) >= 30 and len(names) == len(CORPUS)
    kinds = ("utf8-local", "ulabel", "helo", "confusable", "mixed-script", "malformed", "encoded-word")
    assert all(any(k in n for n in names) for k in kinds)


def test_corpus_through_postfix(world):
    pf, sink = world
    wrong = []
    for entry in CORPUS:
        sink.clear()
        code, text = send(pf.port, entry, build(entry))
        if entry.refused:
            found = _RESULT.search(text) if code == 550 else None
            if found is None:
                wrong.append(f"{entry.name}: expected a 550 with results, got {code} {text!r}")
                continue
        else:
            if code != 250:
                wrong.append(f"{entry.name}: expected delivery, got {code} {text!r}")
                continue
            [delivery] = sink.wait_for(1)
            header = delivery.header("X-Corpus") or ""
            found = _RESULT.search(header)
            ours = " ".join(delivery.headers("Authentication-Results")[:1])
            if expected(entry)[3] and f"header.from={expected(entry)[3]}" not in ours.replace("\r\n", " "):
                wrong.append(f"{entry.name}: A-R without header.from={expected(entry)[3]}: {ours!r}")
        got = found.groups() if found else ("?",) * 4
        if tuple(got) != expected(entry):
            wrong.append(f"{entry.name}: got {got}, RFC answer {expected(entry)}")
    assert wrong == [], "\n".join(wrong)
