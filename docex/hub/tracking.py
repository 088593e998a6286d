"""Read-side queries over the tracking store: one document's recipients, document lists,
unit statistics, the overview. The CLI (`docex track`, `docex documents`) and the read
API both use these, so they always agree."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from docex.hub import states
from docex.hub.models import Delivery, Document, Link, Receipt, Unit, iso, utcnow
from docex.protocols import localtime


def document_detail(s: Session, message_id: str) -> dict[str, Any] | None:
    doc = s.get(Document, message_id)
    if doc is None:
        return None
    names = dict(s.execute(select(Unit.address, Unit.name)).tuples().all())
    sender_name = names.get(doc.sender, "")
    rows = s.execute(select(Delivery).where(Delivery.message_id == message_id).order_by(Delivery.id)).scalars().all()
    receipts = s.execute(select(Receipt).where(Receipt.message_id == message_id).order_by(Receipt.at)).scalars().all()
    return {
        "message_id": doc.message_id,
        "doc_number": doc.doc_number,
        "title": doc.title,
        "sender": doc.sender,
        "sender_name": sender_name,
        "priority": doc.priority,
        "classification": doc.classification,
        "created_at": iso(doc.created_at),
        "accepted_at": iso(doc.accepted_at),
        "deadline": iso(doc.deadline),
        "size": doc.size,
        "recipients": [
            {
                "address": r.recipient,
                "name": names.get(r.recipient, ""),
                "route": r.route,
                "state": r.state,
                "code": r.code,
                "accepted_at": iso(r.accepted_at),
                "routed_at": iso(r.routed_at),
                "delivered_at": iso(r.delivered_at),
                "signed_for_at": iso(r.signed_for_at),
                "returned_at": iso(r.returned_at),
                "reason": r.reason,
                "person": r.person,
                "reminders": r.reminders,
            }
            for r in rows
        ],
        "receipts": [
            {"recipient": r.recipient, "event": r.event, "at": iso(r.at), "reason": r.reason} for r in receipts
        ],
    }


@dataclass(frozen=True)
class DocumentQuery:
    q: str = ""
    sender: str = ""
    unit: str = ""  # sender or recipient
    state: str = ""  # documents with at least one recipient in this state
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    limit: int = 100
    pending: bool = False  # with a recipient who has not signed for it yet (routed or delivered)
    overdue: bool = False  # with a recipient still open past the document's deadline


def list_documents(s: Session, query: DocumentQuery) -> list[dict[str, Any]]:
    stmt = select(Document).order_by(Document.accepted_at.desc()).limit(max(1, min(query.limit, 1000)))
    if query.q:
        like = f"%{query.q}%"
        stmt = stmt.where(or_(Document.doc_number.like(like), Document.title.like(like), Document.message_id == query.q))
    if query.sender:
        stmt = stmt.where(Document.sender == query.sender)
    if query.unit:
        stmt = stmt.where(or_(Document.sender == query.unit,
                              Document.message_id.in_(select(Delivery.message_id).where(Delivery.recipient == query.unit))))
    if query.state:
        stmt = stmt.where(Document.message_id.in_(select(Delivery.message_id).where(Delivery.state == query.state)))
    if query.pending:
        stmt = stmt.where(Document.message_id.in_(
            select(Delivery.message_id).where(Delivery.state.in_((states.ROUTED, states.DELIVERED)))))
    if query.overdue:
        stmt = stmt.where(Document.deadline < utcnow(), Document.message_id.in_(
            select(Delivery.message_id).where(Delivery.state.in_(tuple(states.OPEN)))))
    if query.date_from:
        stmt = stmt.where(Document.accepted_at >= localtime.day_start(query.date_from))
    if query.date_to:
        stmt = stmt.where(Document.accepted_at < localtime.day_start(query.date_to + dt.timedelta(days=1)))
    docs = s.execute(stmt).scalars().all()
    ids = [d.message_id for d in docs]
    counts: dict[str, dict[str, int]] = {i: {} for i in ids}
    if ids:
        for message_id, state, n in s.execute(
            select(Delivery.message_id, Delivery.state, func.count()).where(Delivery.message_id.in_(ids))
            .group_by(Delivery.message_id, Delivery.state)
        ).tuples():
            counts[message_id][state] = n
    names = dict(s.execute(select(Unit.address, Unit.name)).tuples().all())
    return [
        {
            "message_id": d.message_id,
            "doc_number": d.doc_number,
            "title": d.title,
            "sender": d.sender,
            "sender_name": names.get(d.sender, ""),
            "priority": d.priority,
            "classification": d.classification,
            "created_at": iso(d.created_at),
            "accepted_at": iso(d.accepted_at),
            "deadline": iso(d.deadline),
            "recipients_total": sum(counts[d.message_id].values()),
            "states": counts[d.message_id],
            # what the information centre must act on: some recipients get it on paper or refused it
            "flags": [f for f in (states.PAPER_ROUTE, states.REJECTED) if counts[d.message_id].get(f)],
        }
        for d in docs
    ]


@dataclass(frozen=True)
class UnitStats:
    address: str
    name: str
    kind: str
    state: str
    phase: str
    last_seen: str | None
    online: bool
    sent: int
    received: int
    signed_for: int
    signed_for_on_time: int
    returned: int
    pending: int
    cert_expiry: str | None


def unit_stats(s: Session, *, online_seconds: float, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> list[UnitStats]:
    now = utcnow()
    units = s.execute(select(Unit).order_by(Unit.address)).scalars().all()
    doc_filter = []
    if since is not None:
        doc_filter.append(Document.accepted_at >= since)
    if until is not None:
        doc_filter.append(Document.accepted_at < until)
    sent = dict(s.execute(select(Document.sender, func.count()).where(*doc_filter).group_by(Document.sender)).tuples().all())
    per_state: dict[str, dict[str, int]] = {}
    on_time: dict[str, int] = {}
    joined = select(Delivery.recipient, Delivery.state, func.count()).join(Document, Document.message_id == Delivery.message_id)
    for recipient, state, n in s.execute(joined.where(*doc_filter).group_by(Delivery.recipient, Delivery.state)).tuples():
        per_state.setdefault(recipient, {})[state] = n
    for recipient, n in s.execute(
        select(Delivery.recipient, func.count()).join(Document, Document.message_id == Delivery.message_id)
        .where(Delivery.state == states.SIGNED_FOR, Delivery.signed_for_at <= Document.deadline, *doc_filter)
        .group_by(Delivery.recipient)
    ).tuples():
        on_time[recipient] = n
    result = []
    for u in units:
        st = per_state.get(u.address, {})
        seen = u.last_seen if u.last_seen else None
        result.append(UnitStats(
            address=u.address, name=u.name, kind=u.kind, state=u.state, phase=u.phase,
            last_seen=iso(seen), online=bool(seen and (now - seen).total_seconds() <= online_seconds),
            sent=sent.get(u.address, 0),
            received=sum(n for k, n in st.items() if k in (states.DELIVERED, states.SIGNED_FOR, states.RETURNED)),
            signed_for=st.get(states.SIGNED_FOR, 0), signed_for_on_time=on_time.get(u.address, 0),
            returned=st.get(states.RETURNED, 0),
            pending=sum(n for k, n in st.items() if k in states.OPEN),
            cert_expiry=iso(u.cert_not_after),
        ))
    return result


def count_overdue(s: Session, now: dt.datetime) -> int:
    """Deliveries still open (not signed for nor returned) past their document's deadline."""
    return s.execute(
        select(func.count()).select_from(Delivery).join(Document, Document.message_id == Delivery.message_id)
        .where(Delivery.state.in_(tuple(states.OPEN)), Document.deadline < now)
    ).scalar_one()


def overview(s: Session, *, online_seconds: float, links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The dashboard's overview. `links`: rows {name, state, backlog} with the broker's
    view (docex.hub.status.dashboard_links); without them each link shows its configured
    state and no backlog."""
    now = utcnow()
    midnight = localtime.day_start(localtime.local(now).date())
    documents_today = s.execute(select(func.count()).select_from(Document).where(Document.accepted_at >= midnight)).scalar_one()
    pending_sign_for = s.execute(
        select(func.count()).select_from(Delivery).where(Delivery.state.in_((states.ROUTED, states.DELIVERED)))
    ).scalar_one()
    stats = unit_stats(s, online_seconds=online_seconds)
    if links is None:
        links = [{"name": link.name, "state": link.state, "backlog": None}
                 for link in s.execute(select(Link).order_by(Link.name)).scalars()]
    return {
        "documents_today": documents_today,
        "pending_sign_for": pending_sign_for,
        "overdue": count_overdue(s, now),
        "units_total": len(stats),
        "units_offline": sum(1 for u in stats if not u.online and u.state == "enabled"),
        "links": links,
        "generated_at": iso(now),
        "today": localtime.local(now).date().isoformat(),
        "timezone": localtime.label(),
    }


def stats_dicts(stats: list[UnitStats]) -> list[dict[str, Any]]:
    return [asdict(u) for u in stats]
