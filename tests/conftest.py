"""Shared pytest configuration.

Daemon fixtures are defined once here (imported from tests/harness), so a session-scoped
fixture really is one instance per test run: importing a fixture into several test modules
would make pytest start one daemon per module.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.knot import knot_dns, silent_dns  # noqa: E402,F401  (fixtures)
from tests.harness.mariadb import mariadb_server, opendmarc_db  # noqa: E402,F401  (fixtures)
from tests.harness.redis import redis_module_server  # noqa: E402,F401  (fixture)
from tests.harness.scanners import rspamd, spamd  # noqa: E402,F401  (fixtures)
