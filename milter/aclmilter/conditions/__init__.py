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
    "dnslists",    # DNSBL/DNSWL lookups and $dnslist_* (Exim's dnslists)
)


def load_all(features: tuple[str, ...] = FEATURES) -> None:
    """Import every feature module in `features` (FEATURES).

    A name with no module (a typo) fails the import of this package with ModuleNotFoundError,
    never drops the feature silently."""
    for name in features:
        importlib.import_module(f"{__name__}.{name}")


load_all()
