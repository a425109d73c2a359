"""How a session runs: one `Mode`, one word per meaning.

- `monitor`: refusals are logged (and named in the dry-run header), never given. The
  service's "dry run": `settings.dry_run` or `aclmilter serve --dry-run`.
- `simulate`: nothing leaves the process: no delay is waited, no DCC report or DMARC
  history line or failure report is sent or written, no event action runs. `aclmilter test`
  and `aclmilter bh`.
- `writes`: shared state may be written (ratelimit updates, Redis write commands). Off in a
  simulation unless `--update` asks for it.
- `trace`: every stage keeps its decision trace and every variable's value (`aclmilter test`,
  `bh -d`, bh's Exim view); the daemon keeps only the deciding statement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    monitor: bool = False
    simulate: bool = False
    writes: bool = True
    trace: bool = False


#: the service without monitor mode
LIVE = Mode()
