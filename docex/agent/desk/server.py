"""The desk's HTTP server: uvicorn in a background thread of the agent, stoppable. Pure
Python (asyncio), so it runs the same on a Windows terminal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from docex.agent.context import AgentContext

log = logging.getLogger(__name__)


class DeskServer:
    def __init__(self, ctx: AgentContext, *, host: str | None = None, port: int | None = None,
                 wake: Callable[[], None] = lambda: None) -> None:
        import uvicorn

        from docex.agent.desk.api import create_app

        cfg = ctx.config.desk
        self.config = uvicorn.Config(create_app(ctx, wake=wake), host=host or cfg.host,
                                     port=cfg.port if port is None else port, log_level="warning", lifespan="off",
                                     timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="docex-desk", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        log.info("desk on http://%s:%d/", self.config.host, self.port)

    @property
    def port(self) -> int:
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
