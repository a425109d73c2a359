"""Real Exim as the oracle: every case of tests/fixtures/exim/cases.yaml runs through
`exim -bh`, is imported with import-exim and replayed with `aclmilter bh --mta exim`; the
replies must agree (codes always; texts of refusals, which a milter controls).

A subset also runs through real Postfix + `aclmilter serve` and must match
`aclmilter bh --mta postfix` line by line (EHLO capability lists aside).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aclmilter.bh import Dialogue, Mta
from aclmilter.eximimport import translate
from aclmilter.runtime import Runtime
from tests.harness.exim import STOCK_CONF_D, dns53, main_options, run_bh  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

CASES_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "exim" / "cases.yaml"
DATA = yaml.safe_load(CASES_FILE.read_text())
CASES = DATA["cases"]
MSG = "Subject: test\nFrom: <a@s.test>\n\nhello\n."
#: protocol replies Exim writes itself (texts differ from ours only in wording we copy)
_MTA_CODES = ("220", "221", "250", "354", "500", "501", "503")


def group(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Reply lines -> replies: (code, [texts])."""
    out: list[tuple[str, list[str]]] = []
    cur: list[str] = []
    for line in lines:
        cur.append(line[4:])
        if len(line) < 4 or line[3] != "-":
            out.append((line[:3], cur))
            cur = []
    return out


def comparable(lines: list[str]) -> list[tuple[str, tuple[str, ...] | None]]:
    """Codes of every reply, texts of refusals (what the policy controls)."""
    return [(code, None if code in _MTA_CODES else tuple(texts)) for code, texts in group(lines)]


def _prepare(case: dict, workdir: Path) -> tuple[Path, str, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in (case.get("files") or {}).items():
        (workdir / name).write_text(text)
    conf = workdir / "exim.conf"
    conf.write_text(main_options(workdir) + case["config"].replace("{DIR}", str(workdir)))
    dialogue = case["dialogue"].replace("{MSG}", MSG) + "\n"
    return conf, case.get("client", DATA["defaults"]["client"]), dialogue


def imported(conf: Path, case: dict, request: pytest.FixtureRequest):
    """import-exim's result for the case; a DNS case also gets the test DNS server (Exim
    takes it from resolv.conf, aclmilter from settings.dns)."""
    result = translate(str(conf))
    if case.get("dns"):
        server = request.getfixturevalue("dns53")
        result.policy["settings"]["dns"] = {"nameservers": [server.nameserver]}
        result.yaml = yaml.safe_dump(result.policy, sort_keys=False, width=1 << 16)
    return result


def _aclmilter_bh(policy: Path, client: str, dialogue: str, mta: Mta) -> list[str]:
    runtime = Runtime(str(policy), monitor=False)
    runtime.load()
    return Dialogue(runtime, client, mta).run(dialogue.split("\n"))


@pytest.fixture(scope="module")
def workroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exim-oracle")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_matches_real_exim(case: dict, workroot: Path, request: pytest.FixtureRequest) -> None:
    wd = workroot / re.sub(r"[^A-Za-z0-9]+", "_", case["name"])
    conf, client, dialogue = _prepare(case, wd)
    resolv = request.getfixturevalue("dns53").resolv_conf if case.get("dns") else None
    exim = run_bh(conf, client, dialogue, resolv_conf=resolv)
    assert exim.replies, exim.log
    for line in case.get("expect", ()):         # the oracle really saw what the case is about
        assert line in exim.replies, exim.replies
    result = imported(conf, case, request)
    policy = wd / "policy.yaml"
    policy.write_text(result.yaml)
    # nothing of the ACLs is left out (only the harness's MTA-only main options are reported)
    assert not [r for r in result.report if "MTA-only" not in r and "no acl_smtp_rcpt" not in r], result.report
    ours = _aclmilter_bh(policy, client, dialogue, Mta.EXIM)
    if case.get("expect_ours"):                 # texts the comparison below leaves out (2xx)
        assert [line for line in case["expect"] if line not in ours] == [], ours
    if case.get("exim_ends_session"):
        # Exim ended the session with no reply where we answer 4xx: the same up to there
        n = len(exim.replies)
        assert ours[:n] == exim.replies[:n] or comparable(ours)[:len(comparable(exim.replies))] == \
            comparable(exim.replies), ours
        assert comparable(ours)[len(comparable(exim.replies))][0].startswith("4"), ours
        return
    assert comparable(ours) == comparable(exim.replies), (
        "\nexim:\n" + "\n".join(exim.replies) + "\naclmilter:\n" + "\n".join(ours) + "\n" + result.yaml)


def test_cases_are_enough() -> None:
    assert len(CASES) >= 40


def test_cli_import_and_bh(workroot: Path) -> None:
    """The two commands as an administrator runs them (subprocesses), on one case."""
    case = next(c for c in CASES if c["name"] == "named domain list")
    wd = workroot / "cli"
    conf, client, dialogue = _prepare(case, wd)
    cli = [sys.executable, "-m", "aclmilter.cli"]
    policy = wd / "policy.yaml"
    r = subprocess.run(cli + ["import-exim", str(conf), "-o", str(policy)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "not translated" in r.stderr           # the report: exim_user etc. are MTA-only
    r = subprocess.run(cli + ["check", str(policy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["bh", "--policy", str(policy), "--mta", "exim", "-d", client], input=dialogue,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert comparable(r.stdout.splitlines()) == comparable(run_bh(conf, client, dialogue).replies)
    assert f"{policy}:" in r.stderr               # the -d trace names statements by file:line


def test_debian_stock_acls_import(workroot: Path) -> None:
    """Debian's split configuration (exim4-config, unpacked): its ACL files translate, and
    what does not is reported with file:line; the result passes `aclmilter check`."""
    acl_dir = STOCK_CONF_D / "acl"
    assert acl_dir.is_dir(), f"{acl_dir} missing: run scripts/setup.sh test"
    wd = workroot / "stock"
    wd.mkdir()
    conf = wd / "exim4.conf"
    parts = ["acl_smtp_mail = acl_check_mail\nacl_smtp_rcpt = acl_check_rcpt\n"
             "acl_smtp_data = acl_check_data\n",
             "domainlist local_domains = @\ndomainlist relay_to_domains =\n"
             "hostlist relay_from_hosts = 127.0.0.1\n"]
    for f in sorted(acl_dir.iterdir()):
        parts.append(f".include {f}\n")
    conf.write_text("".join(parts))
    result = translate(str(conf))
    policy = wd / "policy.yaml"
    policy.write_text(result.yaml)
    r = subprocess.run([sys.executable, "-m", "aclmilter.cli", "check", str(policy)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr + result.yaml
    assert result.translated >= 5 and result.statements > result.translated
    for item in result.report:
        assert item.split(":")[0].startswith(("/", str(conf))), item    # every item says where
    assert any("verify" in r for r in result.report)                    # verify = is MTA work
