# SPDX-License-Identifier: GPL-3.0-or-later
"""A test server on 127.0.0.1:<free port> served by one daemon thread, as a context manager.

Subclasses implement `_serve()` (loop until `self._stop` is set); `with Server(...) as s:`
starts the thread, leaving the block stops it, joins it and closes the socket.
"""

from __future__ import annotations

import socket
import threading
from typing import Self


class LoopbackServer:
    def __init__(self, kind: socket.SocketKind, name: str, *, timeout: float | None = None,
                 backlog: int | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, kind)
        self._sock.bind(("127.0.0.1", 0))
        if backlog is not None:
            self._sock.listen(backlog)
        if timeout is not None:
            self._sock.settimeout(timeout)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _serve(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()
