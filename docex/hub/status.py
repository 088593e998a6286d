"""What the hub reports to Prometheus at scrape time (gauges): delivery states, queue
depths, oldest undelivered document per unit and link, units online, certificates
expiring, the audit chain, overdue deliveries, dead letters."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import func, select

from docex.broker.topology import DEAD_QUEUE
from docex.hub import audit, broker, states
from docex.hub.context import HubContext
from docex.hub.models import Delivery, Document, Unit, utcnow
from docex.monitoring.status import LinkStatus, StatusSnapshot


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
            rows = s.execute(
                select(Delivery.route, Delivery.recipient, func.min(Document.accepted_at))
                .join(Document, Document.message_id == Delivery.message_id)
                .where(Delivery.state.in_((states.ACCEPTED, states.ROUTED)))
                .group_by(Delivery.route, Delivery.recipient)
            ).tuples().all()
            overdue = s.execute(
                select(func.count()).select_from(Delivery).join(Document, Document.message_id == Delivery.message_id)
                .where(Delivery.state.in_(tuple(states.OPEN)), Document.deadline < now)
            ).scalar_one()
            if self._audit_ok is None or time.monotonic() - self._audit_at > self.audit_every:
                self._audit_ok = audit.verify_chain(s).ok
                self._audit_at = time.monotonic()
        oldest: dict[str, float] = {}
        for route, recipient, at in rows:
            key = recipient if route == "local" else route.removeprefix("link:")
            age = (now - (at if at.tzinfo else at.replace(tzinfo=dt.UTC))).total_seconds()
            oldest[key] = max(oldest.get(key, 0.0), age)
        last_seen = {}
        online = 0
        for u in units:
            if u.last_seen is None:
                continue
            age = (now - (u.last_seen if u.last_seen.tzinfo else u.last_seen.replace(tzinfo=dt.UTC))).total_seconds()
            last_seen[u.address] = age
            online += age <= cfg.limits.heartbeat_online_seconds
        soon = now + dt.timedelta(days=30)
        expiring = sum(
            1 for u in units
            if u.cert_not_after is not None and (u.cert_not_after if u.cert_not_after.tzinfo else u.cert_not_after.replace(tzinfo=dt.UTC)) < soon
        )
        depths: dict[str, int] = {}
        dead: int | None = None
        links: dict[str, LinkStatus] = {}
        try:
            with broker.management(cfg) as mgmt:
                for q in mgmt.list_queues(cfg.broker.vhost):
                    depths[q.name] = q.messages_ready + q.messages_unacknowledged
            dead = depths.get(DEAD_QUEUE, 0)
            for name in self.ctx.links():
                backlog = depths.get(f"link.{name}", 0)
                links[name] = LinkStatus(up=True, backlog_out=backlog, oldest_seconds=oldest.get(name, 0.0))
        except Exception:  # noqa: BLE001 - broker stats are optional for a scrape
            pass
        return StatusSnapshot(
            deliveries_by_state={state: by_state.get(state, 0) for state in states.ALL},
            queue_depths=depths,
            oldest_undelivered_seconds=oldest,
            units_total=len(units),
            units_online=online,
            unit_last_seen_seconds=last_seen,
            certificates_expiring_30d=expiring,
            audit_chain_ok=self._audit_ok,
            overdue=overdue,
            dead_letters=dead,
            links=links,
        )
