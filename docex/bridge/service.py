"""`docex bridge run`: two pumps, one each way.

    out (up):   child's link.parent  -> parent's docex.ingress
    in  (down): parent's link.<name> -> child's docex.ingress

A pump consumes its source queue and republishes each message unchanged (body, message id,
type) into the other hub's ingress as the bridge's own broker user (RabbitMQ vouches for
it: the receiving hub knows the message came over this link), with the hop count raised.
It acknowledges the source only after the destination confirmed. While the destination is
away the pump holds what it has in hand and retries; it never returns a message just to
fetch it again, so the source queue's delivery limit is not spent on an outage. A crash
returns the unacknowledged messages to the source queue; the receiving hub is idempotent
on message id, so a repeat is harmless: nothing is lost, nothing is counted twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docex.bridge.config import BridgeConfig, Side
from docex.broker import (
    BrokerConnectionLost,
    BrokerError,
    BrokerSettings,
    ConfirmedPublisher,
    Consumer,
    Delivery,
    PublishItem,
    PublishNacked,
    PublishTimeout,
    Unroutable,
    connect,
)
from docex.broker.topology import INGRESS_EXCHANGE, ingress_routing_key
from docex.monitoring.observer import NullObserver, Observer
from docex.monitoring.status import LinkStatus, StatusSnapshot
from docex.protocols import localtime, messages

log = logging.getLogger(__name__)

OUT, IN = "out", "in"  # seen from the child hub: out = up to the parent, in = down to the child
RATE_WINDOW = 60.0


def error_code(exc: BaseException) -> str:
    """A stable code for a failed move (a bounded metric label)."""
    if isinstance(exc, BrokerError) and exc.status == 403:
        return "access_refused"
    if isinstance(exc, PublishTimeout):
        return "publish_timeout"
    if isinstance(exc, BrokerConnectionLost):
        return "broker_unreachable"
    if isinstance(exc, PublishNacked):
        return "nacked"
    if isinstance(exc, Unroutable):
        return "unroutable"
    if isinstance(exc, BrokerError):
        return "broker_error"
    return "internal"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return localtime.iso(dt.datetime.fromtimestamp(ts, dt.UTC))


def forward_item(delivery: Delivery, user: str) -> PublishItem:
    """The message as it goes into the other hub's ingress: same bytes, id and type; our
    login as user_id; broker headers (x-*) dropped; one more hop counted."""
    headers = {k: v for k, v in (delivery.headers or {}).items() if not str(k).startswith("x-")}
    headers[messages.H_HOPS] = int(headers.get(messages.H_HOPS, 0) or 0) + 1
    return PublishItem(
        INGRESS_EXCHANGE, ingress_routing_key(delivery.properties.type), delivery.body,
        delivery.message_id or f"bridged|{delivery.routing_key}|{delivery.delivery_tag}",
        headers=headers, user_id=user, type=delivery.properties.type,
        correlation_id=delivery.properties.correlation_id,
    )


@dataclass
class PumpState:
    moved: int = 0
    bytes: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, Any] | None = None
    last_moved_at: float | None = None
    source_since: float | None = None
    dest_since: float | None = None
    backlog: int | None = None  # ready messages in the source queue (last look)
    recent: deque[float] = field(default_factory=deque)


class Pump:
    """One direction of the bridge."""

    def __init__(self, direction: str, link: str, source: BrokerSettings, queue: str, dest: BrokerSettings,
                 *, workers: int, prefetch: int, reconnect_max: float, observer: Observer) -> None:
        self.direction = direction
        self.link = link
        self.source = source
        self.queue = queue
        self.dest = dest
        self.observer = observer
        self.state = PumpState()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._publisher: ConfirmedPublisher | None = None
        self._in_hand: dict[int, float] = {}  # id -> when the message was first published (its age)
        self.reconnect_max = reconnect_max
        self.consumer = Consumer(source, queue, self.handle, workers=workers, prefetch=prefetch,
                                 name=f"docex-bridge-{link}-{direction}", reconnect_max=reconnect_max)
        self._thread = threading.Thread(target=self._run, name=f"docex-bridge-{direction}", daemon=True)

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._publisher is not None:
            self._publisher.close()  # a publish waiting for an absent side gives up now
        self.consumer.stop()
        self._thread.join(10)

    def _run(self) -> None:
        """Open the destination first: consuming before we can deliver would only hold
        messages away from the queue."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._publisher = ConfirmedPublisher.open(self.dest, connection_name=f"docex-bridge-{self.link}-{self.direction}-pub")
                break
            except BrokerError as exc:
                self._note_error(exc, where="destination")
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
        if not self._stop.is_set():
            self.consumer.start()

    @property
    def source_up(self) -> bool:
        return self.consumer.is_ready

    @property
    def dest_up(self) -> bool:
        return self._publisher is not None and self._publisher.is_connected

    # -- moving ---------------------------------------------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        item = forward_item(delivery, self.dest.user)
        key = id(delivery)
        sent = delivery.properties.timestamp
        with self._lock:
            self._in_hand[key] = float(sent) if sent else time.time()
        try:
            delay = 0.2
            while True:
                publisher = self._publisher
                try:
                    if publisher is None:
                        raise BrokerConnectionLost("destination not connected yet")
                    publisher.publish_many([item])
                    break
                except BrokerError as exc:
                    self._note_error(exc, where="destination")
                    if self._stop.is_set() or self.consumer.stopping:
                        raise  # back to the source queue; a restarted bridge takes it again
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.reconnect_max)
        finally:
            with self._lock:
                self._in_hand.pop(key, None)
        now = time.time()
        kind = delivery.properties.type or messages.DOCUMENT
        with self._lock:
            st = self.state
            st.moved += 1
            st.bytes += len(delivery.body)
            st.by_type[kind] = st.by_type.get(kind, 0) + 1
            st.last_moved_at = now
            st.recent.append(now)
        self.observer.link_forwarded(self.link, self.direction, len(delivery.body))

    def _note_error(self, exc: BaseException, *, where: str) -> None:
        code = error_code(exc)
        with self._lock:
            self.state.errors[code] = self.state.errors.get(code, 0) + 1
            self.state.last_error = {"at": _iso(time.time()), "code": code, "where": f"{self.direction} {where}",
                                     "message": str(getattr(exc, "message", exc))[:300]}
        self.observer.link_error(self.link, code)
        log.warning("bridge %s %s: [%s] %s", self.link, self.direction, code, getattr(exc, "message", exc))

    # -- accounts -------------------------------------------------------------------------------
    def oldest_in_hand(self) -> float:
        with self._lock:
            oldest = min(self._in_hand.values(), default=None)
        return max(0.0, time.time() - oldest) if oldest is not None else 0.0

    def report(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            st = self.state
            while st.recent and now - st.recent[0] > RATE_WINDOW:
                st.recent.popleft()
            for up, attr in ((self.source_up, "source_since"), (self.dest_up, "dest_since")):
                if up and getattr(st, attr) is None:
                    setattr(st, attr, now)
                elif not up:
                    setattr(st, attr, None)
            in_hand = len(self._in_hand)
            return {
                "direction": self.direction,
                "queue": self.queue,
                "source": self.source.vhost,
                "destination": self.dest.vhost,
                "source_connected": self.source_up,
                "destination_connected": self.dest_up,
                "source_since": _iso(st.source_since),
                "destination_since": _iso(st.dest_since),
                "moved": st.moved,
                "bytes": st.bytes,
                "by_type": dict(st.by_type),
                "per_second": round(len(st.recent) / RATE_WINDOW, 3),
                "last_moved_at": _iso(st.last_moved_at),
                "backlog": None if st.backlog is None else st.backlog + in_hand,
                "in_hand": in_hand,
                "errors": dict(st.errors),
                "last_error": st.last_error,
            }


class _DepthProbe:
    """Counts ready messages of a queue (passive declare on a login that may only read
    it), on its own small connection so the pump's consumer is never disturbed."""

    def __init__(self, settings: BrokerSettings, queue: str, name: str) -> None:
        self.settings, self.queue, self.name = settings, queue, name
        self._conn: Any = None

    def depth(self) -> int | None:
        try:
            if self._conn is None or not self._conn.is_open:
                self._conn = connect(self.settings, self.name)
            channel = self._conn.channel()
            try:
                return int(channel.queue_declare(self.queue, passive=True).method.message_count)
            finally:
                if channel.is_open:
                    channel.close()
        except Exception:  # noqa: BLE001 - a side that is away has no depth to report
            self.close()
            return None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass


def settings_for(side: Side, prefetch: int, home: Path | None = None) -> BrokerSettings:
    """One side's login: by the bridge's certificate over TLS when it has one there."""
    if side.tls_cert and home is not None:
        return BrokerSettings(url=side.url, prefetch=prefetch, tls_ca=str(home / side.tls_ca),
                              tls_cert=str(home / side.tls_cert), tls_key=str(home / side.tls_key))
    return BrokerSettings(url=side.url, prefetch=prefetch)


class Bridge:
    """Both pumps, the status file and (optionally) /metrics."""

    def __init__(self, config: BridgeConfig, observer: Observer | None = None, *, status_seconds: float = 2.0) -> None:
        if not config.child.ready:
            from docex.protocols.errors import DocexError

            raise DocexError("no_bridge", "the bridge has no login at the child hub yet: run it with --hub CHILD_HUBDIR")
        self.config = config
        self.observer: Observer = observer or NullObserver()
        self.status_seconds = status_seconds
        parent = settings_for(config.parent, config.prefetch, config.home)
        child = settings_for(config.child, config.prefetch, config.home)
        kw: dict[str, Any] = {"workers": config.workers, "prefetch": config.prefetch,
                              "reconnect_max": config.reconnect_max}
        self.up = Pump(OUT, config.link, child, config.child.queue, parent, observer=self.observer, **kw)
        self.down = Pump(IN, config.link, parent, config.parent.queue, child, observer=self.observer, **kw)
        self._probes = {OUT: _DepthProbe(child, config.child.queue, f"docex-bridge-{config.link}-probe-out"),
                        IN: _DepthProbe(parent, config.parent.queue, f"docex-bridge-{config.link}-probe-in")}
        self._stop = threading.Event()
        self.started_at = time.time()

    def stop(self) -> None:
        self._stop.set()

    def run(self, ready: threading.Event | None = None) -> None:
        self.up.start()
        self.down.start()
        log.info("bridge %s running: %s <-> %s", self.config.link, self.config.child.prefix, self.config.parent.prefix)
        if ready is not None:
            ready.set()
        try:
            while not self._stop.is_set():
                self.write_status()
                self._stop.wait(self.status_seconds)
        finally:
            self.up.stop()
            self.down.stop()
            for probe in self._probes.values():
                probe.close()
            self.write_status(stopped=True)

    # -- status ---------------------------------------------------------------------------------
    def report(self, *, stopped: bool = False) -> dict[str, Any]:
        for pump in (self.up, self.down):
            depth = self._probes[pump.direction].depth() if not stopped else None
            with pump._lock:
                pump.state.backlog = depth
        pumps = {OUT: self.up.report(), IN: self.down.report()}
        errors = [p["last_error"] for p in pumps.values() if p["last_error"]]
        connected = all(p["source_connected"] and p["destination_connected"] for p in pumps.values())
        return {
            "link": self.config.link,
            "child": self.config.child.prefix,
            "parent": self.config.parent.prefix,
            "running": not stopped,
            "connected": connected and not stopped,
            "started_at": _iso(self.started_at),
            "updated_at": _iso(time.time()),
            "oldest_in_hand_seconds": round(max(self.up.oldest_in_hand(), self.down.oldest_in_hand()), 1),
            "pumps": pumps,
            "last_error": max(errors, key=lambda e: e["at"] or "") if errors else None,
        }

    def write_status(self, *, stopped: bool = False) -> dict[str, Any]:
        report = self.report(stopped=stopped)
        path = self.config.status_path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
        tmp.replace(path)
        self._last = report
        return report

    def snapshot(self) -> StatusSnapshot:
        """For /metrics (docex_link_up, docex_link_backlog, docex_link_oldest_seconds)."""
        report = getattr(self, "_last", None) or self.report()
        out, inn = report["pumps"][OUT], report["pumps"][IN]
        return StatusSnapshot(
            queue_depths={f"{self.config.child.prefix}:{out['queue']}": out["backlog"] or 0,
                          f"{self.config.parent.prefix}:{inn['queue']}": inn["backlog"] or 0},
            links={self.config.link: LinkStatus(up=bool(report["connected"]), backlog_out=out["backlog"] or 0,
                                                backlog_in=inn["backlog"] or 0,
                                                oldest_seconds=float(report["oldest_in_hand_seconds"]))},
        )


def run_forever(config: BridgeConfig, *, metrics_port: int | None = None) -> None:
    import signal

    port = config.metrics_port if metrics_port is None else metrics_port
    observer: Observer = NullObserver()
    server = None
    bridge: Bridge
    if port:
        from docex.monitoring.exporter import metrics_address, serve_metrics, service_metrics

        holder: dict[str, Bridge] = {}
        registry, prom = service_metrics("bridge", lambda: holder["bridge"].snapshot(), cache_seconds=2.0,
                                         links=[config.link])
        observer = prom
        bridge = Bridge(config, observer)
        holder["bridge"] = bridge
        server = serve_metrics(registry, *metrics_address("bridge", port=port))
        log.info("bridge metrics %s", server.url)
    else:
        bridge = Bridge(config, observer)
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    signal.signal(signal.SIGINT, lambda *_: bridge.stop())
    try:
        bridge.run()
    finally:
        if server is not None:
            server.stop()
