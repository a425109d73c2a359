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
def with_local_dns(policy: Path, workdir: Path) -> Iterator[Path]:
    """Yield a copy of `policy` that resolves through a private loopback knotd."""
    rundir = workdir / "knot"
    (rundir / "db").mkdir(parents=True)
    port = free_port()
    zones = zone_files(ZONES_DIR) + zone_files(BENCH_ZONES)
    conf = rundir / "knot.conf"
    conf.write_text(knot_config(rundir, port, zones))
    log = rundir / "knotd.log"
    with running([require_binary("knotd"), "-c", str(conf)], log) as proc:
        wait_zones(port, zones, proc, log)
        data = yaml.safe_load(policy.read_text()) or {}
        data.setdefault("settings", {})["dns"] = {"nameservers": [f"127.0.0.1:{port}"], "timeout": 2}
        copy = workdir / f"{policy.stem}-localdns.yaml"
        copy.write_text(f"# {policy} with settings.dns -> loopback knotd (bench/localdns.py)\n"
                        + yaml.safe_dump(data, sort_keys=False))
        yield copy
