"""Serving /metrics: one registry per service, process and platform metrics included,
on a configurable host and port."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib import metadata
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from docex.monitoring.prometheus import PrometheusObserver
from docex.monitoring.status import SnapshotSource, StatusCollector

SERVICES = ("hub", "agent", "bridge", "tsa")

# Default metrics ports, one per kind of service, so one machine can run several.
DEFAULT_PORTS: dict[str, int] = {"hub": 9471, "agent": 9472, "bridge": 9473, "tsa": 9474}
DEFAULT_HOST = "127.0.0.1"  # containers set DOCEX_METRICS_HOST=0.0.0.0


def new_registry(service: str) -> CollectorRegistry:
    """A fresh registry for `service` (hub, agent, bridge, tsa) with the process, platform
    and GC collectors and a docex_build_info{service,version} series."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    # *_created series double the series count and nothing of ours reads them
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    info = Info(
        "docex_build", "The docex service and version behind this endpoint.", registry=registry
    )
    info.info({"service": service, "version": _version()})
    return registry


def service_metrics(
    service: str,
    status: SnapshotSource | None = None,
    cache_seconds: float = 0.0,
    links: list[str] | None = None,
) -> tuple[CollectorRegistry, PrometheusObserver]:
    """The usual wiring in one call: registry + observer (+ status collector)."""
    registry = new_registry(service)
    observer = PrometheusObserver(registry, links=links)
    if status is not None:
        registry.register(StatusCollector(status, cache_seconds=cache_seconds, service=service))
    return registry, observer


def metrics_address(
    service: str, host: str | None = None, port: int | None = None
) -> tuple[str, int]:
    """Host and port to serve on: explicit values (CLI flags) win, then the environment
    (DOCEX_METRICS_HOST, DOCEX_METRICS_PORT), then the defaults. Port 0 picks a free one."""
    env_host = os.environ.get("DOCEX_METRICS_HOST")
    env_port = os.environ.get("DOCEX_METRICS_PORT")
    resolved_host = host if host is not None else (env_host or DEFAULT_HOST)
    if port is not None:
        resolved_port = port
    elif env_port:
        try:
            resolved_port = int(env_port)
        except ValueError:
            raise ValueError(f"DOCEX_METRICS_PORT is not a port number: {env_port!r}") from None
    else:
        resolved_port = DEFAULT_PORTS[service]
    if not 0 <= resolved_port <= 65535:
        raise ValueError(f"metrics port out of range: {resolved_port}")
    return resolved_host, resolved_port


@dataclass
class MetricsServer:
    """Handle on a running /metrics endpoint; `stop()` shuts it down."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serves `registry` at http://host:port/metrics from a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host=host, port=server.server_port, _server=server, _thread=thread)


def _version() -> str:
    try:
        return metadata.version("docex")
    except metadata.PackageNotFoundError:
        return "unknown"
