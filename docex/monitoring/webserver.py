"""The web servers docex runs inside a service (the hub's read API and dashboard, the
agent's desk): uvicorn in a daemon thread, started and stopped with the service. Pure
Python (asyncio), so it runs the same on a Windows terminal."""

from __future__ import annotations

import threading
import time
from typing import Any


class ThreadedServer:
    """Serve an ASGI `app` on host:port (port 0: any free one) until `stop()`."""

    def __init__(self, app: Any, host: str, port: int, *, name: str, **options: Any) -> None:
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", **options)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose for port 0)."""
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.config.port)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
