# SPDX-License-Identifier: GPL-3.0-or-later
"""`${srs_encode}` and `inbound_srs` against real Exim 4.96 (`exim -be`, Debian's
exim4-daemon-heavy unpacked by scripts/setup.sh into /var/cache/aclmilter-test/exim or
$ACLMILTER_EXIM_DIR). A missing Exim fails the test, never skips it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aclmilter import expand
from aclmilter.checks import srs
from tests.unit.fakes_ctx import make_ctx

pytestmark = pytest.mark.integration

EXIM_DIR = Path(os.environ.get("ACLMILTER_EXIM_DIR", "/var/cache/aclmilter-test/exim"))


def exim_be(tmp_path: Path, *expressions: str) -> tuple[list[str], int]:
    """Expand each expression with `exim -be`; returns the results and Exim's $tod_epoch."""
    binary = EXIM_DIR / "usr" / "sbin" / "exim4"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run scripts/setup.sh test (Exim is unpacked, never installed)")
    (tmp_path / "spool").mkdir(exist_ok=True)
    conf = tmp_path / "exim.conf"
    conf.write_text(f"exim_user = root\nexim_group = root\nspool_directory = {tmp_path}/spool\n"
                    f"log_file_path = {tmp_path}/%slog\nprimary_hostname = mx.test\n")
    env = dict(os.environ, LD_LIBRARY_PATH=str(EXIM_DIR / "usr" / "lib" / "x86_64-linux-gnu"))
    text = "\n".join(["$tod_epoch", *expressions]) + "\n"
    out = subprocess.run([str(binary), "-C", str(conf), "-be"], input=text, capture_output=True, text=True,
                         env=env, timeout=60)
    # one "> result" line per input line (an empty result is "> "), then a last prompt
    lines = [line[2:] if line.startswith("> ") else line.lstrip(">") for line in out.stdout.splitlines()]
    assert len(lines) >= len(expressions) + 1, out
    lines = lines[:len(expressions) + 1]
    return lines[1:], int(lines[0])


CASES = [("SECRET", "localpart@example.tld", "my.tld"), ("k3y", "Mixed.Case@Example.ORG", "fwd.example"),
         ("s", "a=b+c@d.example", "f.example"), ("s", "", "f.example"), ("s", "<x@y.example>", "f.example"),
         ("s", "SRS0=aaaa=bb=orig.example=alice@fwd.example", "next.example")]


def test_srs_encode_is_byte_identical_to_exim(tmp_path: Path) -> None:
    exprs = [f"${{srs_encode{{{s}}}{{{rp}}}{{{d}}}}}" for s, rp, d in CASES]
    got, epoch = exim_be(tmp_path, *exprs)
    for (secret, rp, domain), theirs in zip(CASES, got, strict=True):
        ours = {srs.encode(secret, rp, domain, t) for t in (epoch, epoch + 1)}   # the day may turn
        assert theirs in ours, (secret, rp, domain, theirs)


def test_inbound_srs_agrees_with_exim(tmp_path: Path) -> None:
    _, epoch = exim_be(tmp_path)
    addresses = [srs.encode("SECRET", "alice@orig.example", "fwd.example", epoch - days * srs.DAY).partition("@")[0]
                 for days in (0, 10, 11, -1)]
    addresses += [srs.encode("other", "alice@orig.example", "fwd.example", epoch).partition("@")[0],
                  "plain", addresses[0].replace("SRS0", "srs0")]
    exprs = [f"${{if inbound_srs{{{a}}}{{{secret}}}{{yes $srs_recipient}}{{no}}}}"
             for secret in ("SECRET", "") for a in addresses]
    got, epoch2 = exim_be(tmp_path, *exprs)
    ctx = make_ctx(settings={"srs_max_age": srs.MAX_AGE_DAYS})
    for expr, theirs in zip(exprs, got, strict=True):
        # the same text through our expansion (Exim's expansion-condition form)
        assert expand.parse(expr).evaluate(ctx) == theirs, (expr, theirs)
    for address, theirs in zip(addresses, got[:len(addresses)], strict=True):
        # and the ACL condition's decoder (settings.srs_secrets): the first block, secret SECRET
        found = srs.decode(address, ("SECRET",), epoch2)
        ours = f"yes {found.recipient}" if found.status is srs.Status.OK else "no"
        assert theirs == ours, (address, theirs, ours)
