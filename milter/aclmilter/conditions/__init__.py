"""Registry entries (conditions, modifiers, controls, variables, settings) by feature.

Importing this package registers every feature. Each module registers only its own names.
"""

import importlib

FEATURES = (
    "core",        # settings, verbs' modifiers, hosts/senders/... , core variables
    "lookups",     # lsearch & friends
    "dns",         # settings.dns and the DNS service
    "spf",
    "dkim",
    "dmarc",
    "dcc",
    "bmi",
    "redis",
    "ratelimit",
    "proxy",
    "srs",         # Exim-native SRS: srs_secrets, ${srs_encode}, inbound_srs, srs_forward/srs_reverse
    "events",      # event_action on reception events
    "arc",         # ARC verification (arc= in our A-R, trusted sealers for DMARC) and sealing
    "esmtp",       # SMTPUTF8 and DSN parameters as variables
    "localhost",   # local_interfaces / hosts_treat_as_local for @mx_* list items
)


def load_all() -> None:
    """Import every feature module that exists (features land one issue at a time)."""
    for name in FEATURES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


load_all()
