"""What the hub reports to Prometheus at scrape time (gauges): delivery states, queue
depths, oldest undelivered document per unit and link, units online, certificates
expiring, the audit chain, overdue deliveries, dead letters, the outbox, links.

Queue depths come from the management API; links from docex.hub.links.status (the same
report `docex link status` prints), which the read API's overview uses too."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from sqlalchemy import func, select

from docex.broker.topology import DEAD_QUEUE
from docex.hub import audit, broker, links, states
from docex.hub.config import HubConfig
from docex.hub.context import HubContext
from docex.hub.dead_letters import CODE as DEAD_LETTER_CODE
from docex.hub.links import LinkReport
from docex.hub.models import Delivery, Document, Outbox, Rejection, Unit, utcnow
from docex.hub.tracking import count_overdue
from docex.monitoring.status import LinkStatus, StatusSnapshot

log = logging.getLogger(__name__)


def queue_depths(config: HubConfig) -> dict[str, int] | None:
    """Queue name -> ready + unacknowledged, from the management API (its statistics lag
    a few seconds); None when it does not answer: "unknown", not zero."""
    try:
        with broker.management(config) as mgmt:
            return {q.name: q.messages_ready + q.messages_unacknowledged
                    for q in mgmt.list_queues(config.broker.vhost)}
    except Exception as exc:  # noqa: BLE001 - broker statistics are optional for a scrape
        log.warning("management API unavailable (%s): no queue depths this time", exc)
        return None


def link_backlog(report: LinkReport) -> int | None:
    """Waiting to cross: in the link queue, plus what a paused or draining link holds
    back in our outbox. None when the broker cannot be asked."""
    return None if report.backlog_out is None else report.backlog_out + report.held_out


def dashboard_links(reports: list[LinkReport]) -> list[dict[str, Any]]:
    """The overview's link rows. An active link is "up" or "down" by whether its bridge
    is connected ("active" when the broker cannot be asked); paused / draining as set."""
    rows = []
    for r in reports:
        state = r.state
        if state == "active" and r.connected is not None:
            state = "up" if r.connected else "down"
        rows.append({"name": r.name, "state": state, "backlog": link_backlog(r)})
    return rows


def link_statuses(reports: list[LinkReport]) -> dict[str, LinkStatus]:
    """Gauges per link. Without the broker a link is neither up nor down: it is left out
    rather than paging someone about a link that may be fine."""
    return {
        r.name: LinkStatus(up=bool(r.connected), backlog_out=link_backlog(r) or 0, backlog_in=r.backlog_in or 0,
                           oldest_seconds=r.oldest_waiting_seconds or 0.0)
        for r in reports if r.connected is not None
    }



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
            overdue = count_overdue(s, now)
            outbox_pending = s.execute(
                select(func.count()).select_from(Outbox).where(Outbox.published_at.is_(None))
            ).scalar_one()
            # Dead letters the hub took in and keeps until someone replays them.
            dead_pending = s.execute(
                select(func.count()).select_from(Rejection).where(Rejection.code == DEAD_LETTER_CODE)
            ).scalar_one()
            if self._audit_ok is None or time.monotonic() - self._audit_at > self.audit_every:
                self._audit_ok = audit.verify_chain(s).ok
                self._audit_at = time.monotonic()
        oldest: dict[str, float] = {}
        for route, recipient, at in rows:
            key = recipient if route == "local" else route.removeprefix("link:")
            oldest[key] = max(oldest.get(key, 0.0), (now - at).total_seconds())
        last_seen = {u.address: (now - u.last_seen).total_seconds() for u in units if u.last_seen}
        online = sum(1 for age in last_seen.values() if age <= cfg.limits.heartbeat_online_seconds)
        soon = now + dt.timedelta(days=30)
        expiring = sum(1 for u in units if u.cert_not_after is not None and u.cert_not_after < soon)
        depths = queue_depths(cfg)
        return StatusSnapshot(
            deliveries_by_state={state: by_state.get(state, 0) for state in states.ALL},
            queue_depths=depths or {},
            oldest_undelivered_seconds=oldest,
            units_total=len(units),
            units_online=online,
            unit_last_seen_seconds=last_seen,
            certificates_expiring_30d=expiring,
            audit_chain_ok=self._audit_ok,
            overdue=overdue,
            dead_letters=dead_pending + (depths.get(DEAD_QUEUE, 0) if depths is not None else 0),
            links=link_statuses(links.status(cfg, self.ctx.db)),
            outbox_pending=outbox_pending,
        )
