# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared caches' sizes are exported as `aclmilter_cache_entries{cache}` (issue 24, point 4),
by a single process and merged over --workers."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.harness.aclmilterd import AclMilterd
from tests.harness.milterclient import MilterClient
from tests.harness.postfix import world_traversable_dir
from tests.harness.procs import free_port

pytestmark = pytest.mark.integration

POLICY = """
settings:
  dns: {{nameservers: ["{ns}"], timeout: 2, lifetime: 4, budget: 10}}
acl:
  mail:
    - deny:
        spf: fail
    - accept
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_sizes_are_exported(knot_dns, workers):
    work = world_traversable_dir("aclm-cachemetrics-")
    policy = work / "policy.yaml"
    policy.write_text(POLICY.format(ns=knot_dns.nameserver))
    port = free_port()
    with AclMilterd(policy, workdir=work, workers=workers, metrics_port=port) as daemon:
        daemon.wait_log(r"serving \(pid \d+\)", count=workers)
        for i in range(3):
            with MilterClient(daemon.client_spec, timeout=30) as client:
                client.connect("client.example.org", "4", 4711, f"192.0.2.{i + 1}")
                client.helo("client.example.org")
                client.mail(f"a@d{i}.spf.test")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    sizes: dict[str, float] = {}
    for cache, value in re.findall(r'^aclmilter_cache_entries\{cache="(\w+)"[^}]*\} (\S+)$', text, re.M):
        sizes[cache] = sizes.get(cache, 0.0) + float(value)
    assert sizes.get("dns", 0) >= 3 and sizes.get("spf_results", 0) >= 3, text[-2000:]
