"""Levels read at scrape time: a custom Collector asks the service for a StatusSnapshot
(its tables, the broker's queues, the directory) and turns it into docex_* gauges.

The service owns the callable; this module only knows the shape. Per-unit labels come
from the directory, so they are bounded by it; nothing here is ever labelled per message.
A failing or slow snapshot never breaks the scrape: the error is logged and counted, and
the process metrics still go out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from docex.monitoring.labels import DELIVERY_STATES

log = logging.getLogger(__name__)

V = TypeVar("V")

# More series than this per family means a snapshot is labelled by something unbounded.
MAX_SERIES = 5000


@dataclass(frozen=True)
class LinkStatus:
    up: bool
    backlog_out: int = 0
    backlog_in: int = 0
    oldest_seconds: float = 0.0


@dataclass(frozen=True)
class StatusSnapshot:
    """What one service knows right now. None / empty means "not this service's to say"
    (a bridge reports links and queues only) and the gauge is left out."""

    deliveries_by_state: dict[str, int] | None = None
    queue_depths: dict[str, int] = field(default_factory=dict)  # queue name -> messages
    oldest_undelivered_seconds: dict[str, float] = field(default_factory=dict)  # unit|link
    units_total: int | None = None
    units_online: int | None = None  # heartbeat seen within the hub's window
    unit_last_seen_seconds: dict[str, float] = field(default_factory=dict)
    certificates_expiring_30d: int | None = None
    audit_chain_ok: bool | None = None
    overdue: int | None = None  # deliveries past their deadline, not yet delivered
    dead_letters: int | None = None
    links: dict[str, LinkStatus] = field(default_factory=dict)
    outbox_pending: int | None = None  # transactional outbox rows the broker has not confirmed
    inbox_unsigned: int | None = None  # agent: received, not yet signed for or returned
    inbox_awaiting_trust: int | None = None  # agent: kept until its signer's CA is trusted here


SnapshotSource = Callable[[], StatusSnapshot]


class StatusCollector(Collector):
    """Register with `registry.register(StatusCollector(source))`.

    `cache_seconds` > 0 reuses a snapshot for that long, so Prometheus and a second
    scraper do not both hit the database."""

    def __init__(
        self, source: SnapshotSource, cache_seconds: float = 0.0, service: str = "hub"
    ) -> None:
        self._source = source
        self._cache_seconds = cache_seconds
        self._service = service
        self._lock = threading.Lock()
        self._cached: tuple[float, StatusSnapshot] | None = None
        self._errors = 0
        self._last_duration = 0.0

    def describe(self) -> Iterable[Metric]:
        # No description: stops the registry from calling collect() at registration time.
        return []

    def _snapshot(self) -> StatusSnapshot | None:
        with self._lock:  # concurrent scrapes share one snapshot instead of queueing N
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            started = time.perf_counter()
            try:
                snap = self._source()
                if not isinstance(snap, StatusSnapshot):
                    raise TypeError(f"status source returned {type(snap).__name__}")
            except Exception:
                self._errors += 1
                log.exception(
                    "%s status snapshot failed; scrape continues without it", self._service
                )
                return None
            finally:
                self._last_duration = time.perf_counter() - started
            self._cached = (now, snap)
            return snap

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        up = GaugeMetricFamily(
            "docex_status_up", "1 when the last status snapshot succeeded.", value=snap is not None
        )
        yield up
        yield CounterMetricFamily(
            "docex_status_errors", "Status snapshots that failed.", value=self._errors
        )
        yield GaugeMetricFamily(
            "docex_status_snapshot_seconds",
            "How long the last status snapshot took.",
            value=self._last_duration,
        )
        if snap is not None:
            yield from self._gauges(snap)

    def _gauges(self, s: StatusSnapshot) -> Iterator[Metric]:
        if s.deliveries_by_state is not None:
            by_state = {state: 0 for state in DELIVERY_STATES}
            by_state.update(s.deliveries_by_state)
            yield _labelled("docex_deliveries", "Deliveries now in each state.", "state", by_state)
        if s.queue_depths:
            yield _labelled(
                "docex_queue_messages",
                "Messages waiting in a broker queue.",
                "queue",
                s.queue_depths,
            )
        if s.oldest_undelivered_seconds:
            yield _labelled(
                "docex_oldest_undelivered_seconds",
                "Age of the oldest document not yet delivered, per unit or link.",
                "unit",
                s.oldest_undelivered_seconds,
            )
        if s.units_total is not None or s.units_online is not None:
            units = GaugeMetricFamily("docex_units", "Units on the network.", labels=["state"])
            if s.units_online is not None:
                units.add_metric(["online"], s.units_online)
            if s.units_total is not None:
                units.add_metric(["total"], s.units_total)
            yield units
        if s.unit_last_seen_seconds:
            yield _labelled(
                "docex_unit_last_seen_seconds",
                "Seconds since the unit's agent was last heard from.",
                "unit",
                s.unit_last_seen_seconds,
            )
        for name, doc, value in (
            ("docex_certificates_expiring", "Certificates expiring within 30 days.",
             s.certificates_expiring_30d),
            ("docex_audit_chain_ok", "1 when the audit log's hash chain verifies.",
             s.audit_chain_ok),
            ("docex_deliveries_overdue", "Deliveries past their deadline, not signed for nor returned (超期未签收).",
             s.overdue),
            ("docex_dead_letters", "Dead letters waiting for replay (docex hub dead-letters list).", s.dead_letters),
            ("docex_outbox_pending", "Outbox messages not yet confirmed by the broker.",
             s.outbox_pending),
            ("docex_inbox_unsigned", "Received documents not yet signed for or returned.",
             s.inbox_unsigned),
            ("docex_inbox_awaiting_trust", "Received documents kept until their signer's CA is trusted here.",
             s.inbox_awaiting_trust),
        ):  # fmt: skip
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))
        if s.links:
            up = GaugeMetricFamily(
                "docex_link_up", "1 when the link is connected.", labels=["link"]
            )
            backlog = GaugeMetricFamily(
                "docex_link_backlog",
                "Envelopes waiting to cross a link.",
                labels=["link", "direction"],
            )
            oldest = GaugeMetricFamily(
                "docex_link_oldest_seconds",
                "Age of the oldest envelope waiting on a link.",
                labels=["link"],
            )
            for link, st in _bounded(s.links, "docex_link_up"):
                up.add_metric([link], float(st.up))
                backlog.add_metric([link, "out"], st.backlog_out)
                backlog.add_metric([link, "in"], st.backlog_in)
                oldest.add_metric([link], st.oldest_seconds)
            yield up
            yield backlog
            yield oldest


def _bounded(values: Mapping[str, V], family: str) -> list[tuple[str, V]]:
    items = sorted(values.items())
    if len(items) > MAX_SERIES:
        log.error("%s: %d label values, keeping %d", family, len(items), MAX_SERIES)
        items = items[:MAX_SERIES]
    return items


def _labelled(
    name: str, doc: str, label: str, values: Mapping[str, float] | Mapping[str, int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in _bounded(values, name):
        family.add_metric([str(key)], float(value))
    return family
