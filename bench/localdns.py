"""A loopback Knot DNS for benchmarks, so policies that use DNS never query the outside world.

`with_local_dns(policy, workdir)` starts knotd on a free 127.0.0.1 port with the test zones
and bench/zones/*.zone, and returns the path of a copy of `policy` whose `settings.dns`
points at it (the policy's own `dns` setting, if any, is replaced). knotd is stopped by PID.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.knot import ZONES_DIR, knot_config, wait_zones, zone_files  # noqa: E402
from tests.harness.procs import free_port, require_binary, running  # noqa: E402

BENCH_ZONES = Path(__file__).resolve().parent / "zones"


@contextlib.contextmanager
def with_local_dns(policy: Path, workdir: Path, libc_addr: str | None = None) -> Iterator[Path]:
    """Yield a copy of `policy` that resolves through a private loopback knotd.

    `libc_addr` (a 127/8 address) makes knotd also answer on that address's port 53, for
    peers that only read /etc/resolv.conf (bench/peers.py gives them a private one)."""
    rundir = workdir / "knot"
    (rundir / "db").mkdir(parents=True)
    port = free_port()
    zones = zone_files(ZONES_DIR) + zone_files(BENCH_ZONES)
    conf = rundir / "knot.conf"
    text = knot_config(rundir, port, zones)
    if libc_addr:
        text = text.replace(f"::1@{port} ]", f"::1@{port}, {libc_addr}@53 ]")
    conf.write_text(text)
    log = rundir / "knotd.log"
    with running([require_binary("knotd"), "-c", str(conf)], log) as proc:
        wait_zones(port, zones, proc, log)
        data = yaml.safe_load(policy.read_text()) or {}
        settings = data.setdefault("settings", {})
        # the policy's other DNS settings (early, budget, ...) stay: benches compare them
        settings["dns"] = {**(settings.get("dns") or {}), "nameservers": [f"127.0.0.1:{port}"], "timeout": 2}
        if "dmarc_history_file" in settings:         # a private history file per run
            settings["dmarc_history_file"] = str(workdir / f"{policy.stem}-history")
        copy = workdir / f"{policy.stem}-localdns.yaml"
        copy.write_text(f"# {policy} with settings.dns -> loopback knotd (bench/localdns.py)\n"
                        + yaml.safe_dump(data, sort_keys=False))
        yield copy


def dns_port(policy_copy: Path) -> int:
    """The loopback knotd port a with_local_dns() policy copy resolves through."""
    data = yaml.safe_load(policy_copy.read_text())
    return int(data["settings"]["dns"]["nameservers"][0].rsplit(":", 1)[1])
