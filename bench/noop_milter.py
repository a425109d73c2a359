#!/usr/bin/env python3
"""Do-nothing pymilters: the cost of libmilter + pymilter alone, for bench/postfix_bench.py.

    .venv/bin/python bench/noop_milter.py [--mode floor|trivial] [--policy FILE] SPEC

SPEC is `unix:/path` or `inet:PORT@127.0.0.1`. Two modes:

- `trivial` — a plain `Milter.Base` subclass that answers CONTINUE everywhere (pymilter's
  defaults: every SMTP step answered, headers and body sent without replies). This is the
  "trivial pymilter" the speed target of issue 3 is compared with.
- `floor` — negotiates exactly what aclmilter negotiates for the policy (`--policy`, default
  policies/default.yaml): the same skipped and unanswered steps, the same macro lists,
  TCP_NODELAY on an inet listener, one header added at end of message. The callbacks are
  C-called lambdas with no Python work. aclmilter minus this case = the cost of the glue,
  the session and the policy; this case minus no milter = what the MTA connection costs
  whatever the milter does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "milter"))

import Milter  # noqa: E402
import milter  # noqa: E402


class Trivial(Milter.Base):
    """Every callback continues; header/body are no-reply (pymilter's usual example)."""

    def connect(self, hostname, family, hostaddr):
        return Milter.CONTINUE

    def hello(self, name):
        return Milter.CONTINUE

    def envfrom(self, sender, *params):
        return Milter.CONTINUE

    def envrcpt(self, rcpt, *params):
        return Milter.CONTINUE

    def data(self):
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name, value):
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk):
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Noop", "seen")
        return Milter.CONTINUE


def run_trivial(spec: str) -> None:
    Milter.factory = Trivial
    Milter.runmilter("noop", spec, timeout=600)


def run_floor(spec_text: str, policy: Path) -> None:
    """aclmilter's negotiation and macro lists, no work in any callback."""
    from aclmilter.runtime import Runtime
    from aclmilter.service import macros, negotiation, netopts, socketspec

    runtime = Runtime(policy, monitor=False)
    runtime.load()
    spec = socketspec.parse(spec_text)
    bits = negotiation.wanted(runtime.current().needs, over_tcp=spec.kind != "unix")

    def negotiate(ctx, opts):
        for stage, names in macros.SYMLISTS.items():
            ctx.setsymlist(stage, names)
        opts[1] &= bits
        opts[2] = opts[3] = 0
        return milter.CONTINUE

    def eom(ctx):
        ctx.addheader("X-Noop", "seen", 0)
        return milter.CONTINUE

    go = lambda *_: milter.CONTINUE  # noqa: E731 - one shared do-nothing callback
    for setter in (milter.set_connect_callback, milter.set_helo_callback, milter.set_envfrom_callback,
                   milter.set_envrcpt_callback, milter.set_header_callback, milter.set_eoh_callback,
                   milter.set_body_callback, milter.set_close_callback):
        setter(go)
    milter.set_eom_callback(eom)
    milter.register("noop", data=go, unknown=None, negotiate=negotiate)
    milter.setconn(spec.libmilter)
    milter.settimeout(600)
    milter.opensocket(True)
    netopts.set_nodelay_on_listener(spec)
    milter.main()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("floor", "trivial"), default="floor")
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "default.yaml")
    ap.add_argument("spec")
    a = ap.parse_args()
    os.umask(0o111)      # smtpd (user postfix) must be able to connect to a unix socket
    print(f"noop milter ({a.mode}) pid {os.getpid()} on {a.spec}", flush=True)
    if a.mode == "trivial":
        run_trivial(a.spec)
    else:
        run_floor(a.spec, a.policy)


if __name__ == "__main__":
    main()
