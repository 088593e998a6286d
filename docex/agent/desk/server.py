"""The desk's HTTP server: uvicorn in a background thread of the agent, stoppable. Pure
Python (asyncio), so it runs the same on a Windows terminal."""

from __future__ import annotations

import logging
from collections.abc import Callable

from docex.agent.context import AgentContext
from docex.monitoring.webserver import ThreadedServer

log = logging.getLogger(__name__)


class DeskServer(ThreadedServer):
    def __init__(self, ctx: AgentContext, *, host: str | None = None, port: int | None = None,
                 wake: Callable[[], None] = lambda: None) -> None:
        from docex.agent.desk.api import create_app

        cfg = ctx.config.desk
        super().__init__(create_app(ctx, wake=wake), host or cfg.host, cfg.port if port is None else port,
                         name="docex-desk", timeout_graceful_shutdown=2)

    def start(self, timeout: float = 15.0) -> None:
        super().start(timeout)
        log.info("desk on http://%s:%d/", self.config.host, self.port)
