#!/usr/bin/env python3
"""A pymilter milter that does nothing: the floor cost of libmilter + pymilter in bench runs.

    .venv/bin/python bench/noop_milter.py unix:/path | inet:PORT@127.0.0.1

It receives the same steps aclmilter negotiates (connect, HELO, MAIL, RCPT, DATA, headers
and body without replies, EOM) and answers CONTINUE, so the difference between this case
and aclmilter in bench/postfix_bench.py is the cost of the policy engine and the glue.
"""

from __future__ import annotations

import os
import sys

import Milter


class Noop(Milter.Base):
    """Every callback continues; header/body are no-reply like aclmilter's."""

    def connect(self, hostname, family, hostaddr):  # noqa: ANN001, ANN201
        return Milter.CONTINUE

    def hello(self, name):  # noqa: ANN001, ANN201
        return Milter.CONTINUE

    def envfrom(self, sender, *params):  # noqa: ANN001, ANN201
        return Milter.CONTINUE

    def envrcpt(self, rcpt, *params):  # noqa: ANN001, ANN201
        return Milter.CONTINUE

    def data(self):  # noqa: ANN201
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name, value):  # noqa: ANN001, ANN201
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk):  # noqa: ANN001, ANN201
        return Milter.CONTINUE

    def eom(self):  # noqa: ANN201
        self.addheader("X-Noop", "seen")
        return Milter.CONTINUE


def main() -> None:
    spec = sys.argv[1]
    os.umask(0o111)      # smtpd (user postfix) must be able to connect to a unix socket
    Milter.factory = Noop
    print(f"noop milter pid {os.getpid()} on {spec}", flush=True)
    Milter.runmilter("noop", spec, timeout=600)


if __name__ == "__main__":
    main()
