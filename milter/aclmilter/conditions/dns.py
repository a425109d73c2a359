# SPDX-License-Identifier: GPL-3.0-or-later
"""Registers `settings.dns` and the `dns` service (one shared clients.dns.DnsClient per policy)."""

from __future__ import annotations

from typing import Any

from .. import registry, services
from ..clients.dns import DnsClient, DnsSettings, parse_dns_settings

registry.setting(
    "dns", parse_dns_settings, DnsSettings(),
    "resolver for every DNS lookup: {nameservers: [\"127.0.0.1:53\", \"[::1]:53\"], timeout: 2, "
    "lifetime: 5, budget: 12, cache_size: 10000, early: true}; `early: false` asks each question only "
    "when its check needs the answer (no early, parallel lookups); absent: the servers of /etc/resolv.conf")


def _build(settings: dict, svc: services.Services) -> DnsClient:
    """Build the shared resolver; metrics are looked up per timeout because the service sets them later."""
    raw: Any = settings.get("dns")
    return DnsClient.from_settings(parse_dns_settings(raw), metrics=lambda: svc.metrics)


services.register_factory("dns", _build)
