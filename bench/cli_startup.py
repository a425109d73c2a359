# SPDX-License-Identifier: GPL-3.0-or-later
"""Start-up time of `aclmilter check` and `aclmilter test` (issue 23 point 4: ≤ 150 ms, median
of 10 runs, bytecode cached), for one or more source trees in the same run, with floors.

    python bench/cli_startup.py [-n 10] [TREE ...]      # TREE: a checkout (default: this one)

Each command runs as the console script does (`from aclmilter.cli import main`) in a fresh
interpreter with PYTHONPATH=TREE/milter and PYTHONDONTWRITEBYTECODE removed from the
environment; one untimed run first writes the bytecode. Runs of the trees and the floors are
interleaved round by round, so a change of machine load hits them all alike. Printed: min and
median wall time per command and tree, plus the floors `python -c pass` and `import yaml`.

Commands timed:
- check         `aclmilter check policies/default.yaml`
- test-nodns    `aclmilter test` with bench/bench-policy.yaml, whose checks ask no DNS
- test-default  `aclmilter test` with policies/default.yaml, whose SPF asks the DNS: its
                settings.dns points at a private loopback knotd (bench/localdns.py), so the
                queries never leave the machine and answer in well under a millisecond
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.localdns import with_local_dns  # noqa: E402

MAIN = "import sys; from aclmilter.cli import main; sys.exit(main())"
SESSION = ["--client-ip", "192.0.2.1", "--from", "a@example.org", "--rcpt", "b@example.net"]


def _env(tree: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tree is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(tree / "milter")
    return env


def _run(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one run; a failing command stops the bench (it would time an error)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr.decode()[-2000:]}")
    return elapsed


def _cases(trees: list[Path], default_dns: Path) -> list[tuple[str, str, list[str], dict[str, str]]]:
    """(command label, tree label, argv, env) for every timed run of one round."""
    py = sys.executable
    cases = [("python -c pass", "-", [py, "-c", "pass"], _env(None)),
             ("python -c 'import yaml'", "-", [py, "-c", "import yaml"], _env(None))]
    for tree in trees:
        label, env = tree.name, _env(tree)
        cli = [py, "-c", MAIN]
        cases += [
            ("check default.yaml", label, cli + ["check", str(ROOT / "policies" / "default.yaml")], env),
            ("test bench-policy (no DNS)", label,
             cli + ["test", "--policy", str(ROOT / "bench" / "bench-policy.yaml"), *SESSION], env),
            ("test default.yaml (DNS, loopback)", label,
             cli + ["test", "--policy", str(default_dns), *SESSION], env),
        ]
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10, help="timed runs per command (default 10)")
    ap.add_argument("trees", nargs="*", type=Path, default=[ROOT], help="checkouts to compare")
    args = ap.parse_args()
    trees = [t.resolve() for t in args.trees]
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp, \
            with_local_dns(ROOT / "policies" / "default.yaml", Path(tmp)) as default_dns:
        cases = _cases(trees, default_dns)
        for _, _, argv, env in cases:           # write the bytecode
            _run(argv, env)
        times: dict[int, list[float]] = {i: [] for i in range(len(cases))}
        for _ in range(args.n):
            for i, (_, _, argv, env) in enumerate(cases):
                times[i].append(_run(argv, env))
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.n} runs each")
    print("| command | tree | min ms | median ms |\n|---|---|---|---|")
    for i, (cmd, tree, _, _) in enumerate(cases):
        print(f"| {cmd} | {tree} | {min(times[i]) * 1000:.0f} | {statistics.median(times[i]) * 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
