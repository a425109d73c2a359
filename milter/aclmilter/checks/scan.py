# SPDX-License-Identifier: GPL-3.0-or-later
"""The `scan` check's result, and the choice of backend for a scanner configuration.

The interface and transports live in clients/ (clients/scan.py, clients/spamd.py,
clients/rspamd.py). The `scan` check (registered in conditions/bmi.py) wraps a backend's
`ScanReport` or `ScannerError` into a `ScanResult`, which never raises, so a failure is a
memoised fact and the policy's configured outcome decides what it means.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..clients.scan import (  # re-exported: the names features and tests use
    DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT, SCANNER_TYPES, Endpoint, Envelope, ScanReport, Scanner,
    ScannerConfig, ScannerError, assemble_message, exchange, header_block, parse_endpoint,
    parse_scanner,
)

__all__ = [
    "DEFAULT_MAX_SIZE", "DEFAULT_TIMEOUT", "SCANNER_TYPES", "Endpoint", "Envelope", "ScanReport",
    "ScanResult", "ScanStatus", "Scanner", "ScannerConfig", "ScannerError", "assemble_message",
    "build_scanner", "exchange", "header_block", "parse_endpoint", "parse_scanner",
]


class ScanStatus(enum.Enum):
    """Whether a verdict can be built from the scan."""

    NOT_REQUESTED = "not_requested"   # control = bmi_run was never set
    SCANNED = "scanned"
    SKIPPED = "skipped"               # too large for the configured max_size: not scanned
    FAILED = "failed"                 # scanner down, timeout, protocol error, none configured


@dataclass(frozen=True)
class ScanResult:
    """Result of the `scan` check: the report when SCANNED, the reason otherwise."""

    status: ScanStatus
    report: ScanReport | None = None
    reason: str = ""

    @property
    def scanned(self) -> bool:
        return self.status is ScanStatus.SCANNED and self.report is not None


def build_scanner(config: ScannerConfig) -> Scanner:
    """Return the backend for a validated scanner configuration."""
    # the backends are imported here, once per loaded policy with a scanner: checking a policy
    # reads only the configuration (issue 23)
    from ..clients.rspamd import RspamdScanner
    from ..clients.spamd import SpamdScanner
    if config.type == "spamd":
        return SpamdScanner(config.endpoint, config.timeout, config.command, config.user)
    return RspamdScanner(config.endpoint, config.timeout)


