"""Shared pytest configuration. Fixtures live in tests/harness/* and are imported explicitly."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Tests import the harness as `tests.harness...`; the package itself is installed in the venv.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
