# SPDX-License-Identifier: GPL-3.0-or-later
"""A private MariaDB server for tests: temp datadir, loopback TCP on a free port, private socket.

`mariadb_server` (session scope) runs mariadb-install-db into a temporary directory, starts
mariadbd as a foreground child (stopped by PID), and yields a `MariaDb` with the port and a
`sql()` helper. `opendmarc_db` (function scope) (re)creates OpenDMARC's schema from the file
Debian ships, so each test starts with empty tables.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from .procs import free_port, require_binary, running, wait_port

#: OpenDMARC's MySQL schema as Debian ships it (`dpkg -L opendmarc`).
OPENDMARC_SCHEMA = Path("/usr/share/dbconfig-common/data/opendmarc/install/mysql")


@dataclass(frozen=True)
class MariaDb:
    port: int
    socket: Path
    datadir: Path
    log: Path
    client: str

    host = "127.0.0.1"

    def sql(self, statement: str, database: str | None = None, stdin: bytes | None = None) -> list[list[str]]:
        """Run SQL with the command-line client; return rows (tab-separated fields)."""
        cmd = [self.client, "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"]
        if database:
            cmd.append(f"--database={database}")
        if stdin is None:
            cmd += ["-e", statement]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb failed: {proc.stderr.decode(errors='replace')}")
        return [line.split("\t") for line in proc.stdout.decode().splitlines()]

    def db_args(self) -> list[str]:
        """Connection options for opendmarc-import / opendmarc-reports (TCP, loopback)."""
        return [f"--dbhost={self.host}", f"--dbport={self.port}", "--dbname=opendmarc",
                "--dbuser=opendmarc", "--dbpasswd=opendmarc"]


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDb]:
    install = require_binary("mariadb-install-db")
    server = require_binary("mariadbd")
    client = require_binary("mariadb")
    base = tmp_path_factory.mktemp("mariadb")
    datadir, sock, log = base / "data", base / "mysqld.sock", base / "mariadbd.log"
    res = subprocess.run([install, "--no-defaults", f"--datadir={datadir}", "--user=root",
                          "--auth-root-authentication-method=socket", "--skip-test-db"],
                         capture_output=True, timeout=180)
    if res.returncode != 0:
        pytest.fail(f"mariadb-install-db failed: {res.stderr.decode(errors='replace')[-2000:]}")
    port = free_port()
    cmd = [server, "--no-defaults", f"--datadir={datadir}", f"--socket={sock}", f"--port={port}",
           "--bind-address=127.0.0.1", "--user=root", f"--pid-file={base / 'mariadbd.pid'}",
           "--skip-log-bin", "--innodb-buffer-pool-size=16M", f"--log-error={log}"]
    with running(cmd, base / "stdout.log") as proc:
        wait_port("127.0.0.1", port, timeout=60, proc=proc)
        db = MariaDb(port, sock, datadir, log, client)
        db.sql("CREATE USER IF NOT EXISTS 'opendmarc'@'127.0.0.1' IDENTIFIED BY 'opendmarc';"
               "CREATE USER IF NOT EXISTS 'opendmarc'@'localhost' IDENTIFIED BY 'opendmarc';"
               "GRANT ALL ON opendmarc.* TO 'opendmarc'@'127.0.0.1';"
               "GRANT ALL ON opendmarc.* TO 'opendmarc'@'localhost';")
        yield db


@pytest.fixture
def opendmarc_db(mariadb_server: MariaDb) -> MariaDb:
    """A fresh, empty `opendmarc` database with Debian's schema."""
    if not OPENDMARC_SCHEMA.is_file():
        pytest.fail(f"{OPENDMARC_SCHEMA} missing: install the opendmarc package")
    mariadb_server.sql("DROP DATABASE IF EXISTS opendmarc")
    mariadb_server.sql("", stdin=OPENDMARC_SCHEMA.read_bytes())
    return mariadb_server
