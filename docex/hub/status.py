"""What the hub reports to Prometheus at scrape time (gauges): delivery states, queue
depths, oldest undelivered document per unit and link, units online, certificates
expiring, the audit chain, overdue deliveries, dead letters, the outbox, links.

The broker's side (queue depths, which link's bridge is connected) comes from the
management API; the read API's overview uses the same view for its link table."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from docex.broker.topology import DEAD_QUEUE, link_queue
from docex.hub import audit, broker, states
from docex.hub.config import HubConfig
from docex.hub.context import HubContext
from docex.hub.models import Delivery, Document, Link, Outbox, Unit, utcnow
from docex.hub.tracking import count_overdue
from docex.monitoring.status import LinkStatus, StatusSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerView:
    """The broker as the management API sees it (its statistics lag a few seconds)."""

    depths: dict[str, int]  # queue name -> ready + unacknowledged
    connected_users: frozenset[str]  # broker users with an open connection to our vhost

    def link_backlog(self, name: str) -> int:
        return self.depths.get(link_queue(name), 0)

    def link_connected(self, link: Link) -> bool:
        return bool(link.broker_user) and link.broker_user in self.connected_users


def broker_view(config: HubConfig) -> BrokerView | None:
    """None when the management API does not answer: callers show "unknown", not zero."""
    vhost = config.broker.vhost
    try:
        with broker.management(config) as mgmt:
            depths = {q.name: q.messages_ready + q.messages_unacknowledged for q in mgmt.list_queues(vhost)}
            users = frozenset(c.user for c in mgmt.list_connections(vhost))
    except Exception as exc:  # noqa: BLE001 - broker statistics are optional for a scrape or a page
        log.warning("management API unavailable (%s): no queue depths this time", exc)
        return None
    return BrokerView(depths, users)


def link_state(link: Link, view: BrokerView | None) -> str:
    """paused / draining as configured; an active link is up or down by whether its
    bridge is connected ("active" when the broker cannot be asked)."""
    if link.state != "active" or view is None:
        return link.state
    return "up" if view.link_connected(link) else "down"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class HubStatus:
    """A SnapshotSource. The audit chain is re-verified at most every few minutes."""

    def __init__(self, ctx: HubContext, *, audit_every: float = 300.0) -> None:
        self.ctx = ctx
        self.audit_every = audit_every
        self._audit_ok: bool | None = None
        self._audit_at = 0.0

    def __call__(self) -> StatusSnapshot:
        now = utcnow()
        cfg = self.ctx.config
        with self.ctx.db.read() as s:
            by_state = dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).tuples().all())
            units = s.execute(select(Unit)).scalars().all()
            links = s.execute(select(Link)).scalars().all()
            rows = s.execute(
                select(Delivery.route, Delivery.recipient, func.min(Document.accepted_at))
                .join(Document, Document.message_id == Delivery.message_id)
                .where(Delivery.state.in_((states.ACCEPTED, states.ROUTED)))
                .group_by(Delivery.route, Delivery.recipient)
            ).tuples().all()
            overdue = count_overdue(s, now)
            outbox_pending = s.execute(
                select(func.count()).select_from(Outbox).where(Outbox.published_at.is_(None))
            ).scalar_one()
            if self._audit_ok is None or time.monotonic() - self._audit_at > self.audit_every:
                self._audit_ok = audit.verify_chain(s).ok
                self._audit_at = time.monotonic()
        oldest: dict[str, float] = {}
        for route, recipient, at in rows:
            key = recipient if route == "local" else route.removeprefix("link:")
            oldest[key] = max(oldest.get(key, 0.0), (now - _aware(at)).total_seconds())
        last_seen = {u.address: (now - _aware(u.last_seen)).total_seconds() for u in units if u.last_seen}
        online = sum(1 for age in last_seen.values() if age <= cfg.limits.heartbeat_online_seconds)
        soon = now + dt.timedelta(days=30)
        expiring = sum(1 for u in units if u.cert_not_after is not None and _aware(u.cert_not_after) < soon)
        view = broker_view(cfg)
        # Without the broker a link is neither up nor down: leave it out rather than page
        # someone about a link that may be fine.
        link_status = {
            link.name: LinkStatus(up=view.link_connected(link), backlog_out=view.link_backlog(link.name),
                                  oldest_seconds=oldest.get(link.name, 0.0))
            for link in links
        } if view is not None else {}
        return StatusSnapshot(
            deliveries_by_state={state: by_state.get(state, 0) for state in states.ALL},
            queue_depths=view.depths if view else {},
            oldest_undelivered_seconds=oldest,
            units_total=len(units),
            units_online=online,
            unit_last_seen_seconds=last_seen,
            certificates_expiring_30d=expiring,
            audit_chain_ok=self._audit_ok,
            overdue=overdue,
            dead_letters=view.depths.get(DEAD_QUEUE, 0) if view else None,
            links=link_status,
            outbox_pending=outbox_pending,
        )
