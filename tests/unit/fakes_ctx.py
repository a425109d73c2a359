"""Contexts for unit tests of expansions, lists and lookups: the shared builder (tests/builders.py)
at RCPT for user@example.org, the client having reached us on 198.51.100.1."""

from __future__ import annotations

import functools

from tests.builders import FakeDns, make_ctx as _make_ctx

make_ctx = functools.partial(_make_ctx, rcpt="user@example.org", local_address="198.51.100.1")

__all__ = ["FakeDns", "make_ctx"]
