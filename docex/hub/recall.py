"""Recall (撤销) at the hub: the sender withdraws a document not yet signed for.

The signed recall is verified like a receipt (the sending unit's seal or one of its staff,
the unit RabbitMQ vouches for, or the link the sender lies behind), kept with the
document's receipts, and every open delivery ends as `recalled`, audited. Each recipient
(or the link it lies behind) gets the sender's own signed recall; recipients that had
already signed for it keep it, and the sender gets a signed notice naming them. All in one
transaction with the outbox rows; a redelivery only publishes what is still owed."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from docex.broker import ConfirmedPublisher, Delivery
from docex.hub import audit, outbox, states
from docex.hub.context import HubContext, Origin
from docex.hub.models import Delivery as DeliveryRow
from docex.hub.models import Document, Outbox, Receipt, Unit, utcnow
from docex.hub.refusals import refuse
from docex.pki.errors import PkiError
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.recall import Recall, verify_recall

log = logging.getLogger(__name__)
EVENT = "recalled"
# A recall can overtake its document between competing hub workers: it goes back to the
# queue a few times before an unknown message id counts as a refusal.
EARLY_ATTEMPTS = 4


class RecallBeforeDocument(RuntimeError):
    """Requeue: the document this recall names is not recorded (yet)."""


def recall_key(message_id: str, recipient: str = "") -> str:
    return f"{message_id}|recall|{recipient}"


def handle_recall(ctx: HubContext, delivery: Delivery, origin: Origin | None, publisher: ConfirmedPublisher) -> None:
    try:
        if origin is None:
            raise DocexError("sender_mismatch", f"a recall from an unknown broker user ({delivery.user_id})")
        recall, _signer = verify_recall(delivery.body, ctx.identity.trust)
        if origin.kind == "unit" and recall.sender != origin.name:
            raise DocexError("sender_mismatch", f"{origin.name} sent a recall signed for {recall.sender}")
        if origin.kind == "link" and ctx.route(recall.sender).link != origin.name:
            raise DocexError("sender_mismatch", f"a recall of {recall.sender} cannot arrive over {origin.name}")
    except PkiError as exc:
        refuse(ctx, delivery, origin, exc.code, exc.message, publisher=publisher)
        return
    assert origin is not None
    problem: tuple[str, str] | None = None
    with ctx.db.session() as s:
        doc = s.get(Document, recall.message_id)
        if doc is None:
            problem = ("unknown_document", f"no document {recall.message_id} at this hub")
        elif doc.sender != recall.sender:
            problem = ("sender_mismatch", f"{recall.sender} did not send {recall.message_id}")
        else:
            seen = s.execute(select(Receipt.id).where(Receipt.message_id == recall.message_id,
                                                      Receipt.recipient == recall.sender,
                                                      Receipt.event == EVENT)).first()
            if seen is None:
                _record(ctx, s, doc, recall, delivery.body, origin)
    if problem is not None and problem[0] == "unknown_document" and delivery.delivery_count < EARLY_ATTEMPTS:
        time.sleep(0.2 * (delivery.delivery_count + 1))
        raise RecallBeforeDocument(f"recall of {recall.message_id} before its document; requeued")
    if problem is not None:
        refuse(ctx, delivery, origin, problem[0], problem[1], message_id=recall.message_id, publisher=publisher)
        return
    from docex.hub.links import not_held

    # New or a redelivery: publish whatever of this recall is still owed.
    with ctx.db.read() as s:
        rows = outbox.pending(s, [messages.notice_key(recall.message_id, EVENT)]) + list(s.execute(
            select(Outbox).where(Outbox.message_id.like(f"{recall_key(recall.message_id)}%"),
                                 Outbox.published_at.is_(None)).order_by(Outbox.id)).scalars())
    outbox.deliver(ctx.db, publisher, not_held(ctx.db, rows), ctx.observer, store=ctx.content)


def _record(ctx: HubContext, s: Session, doc: Document, recall: Recall, der: bytes, origin: Origin) -> None:
    now = utcnow()
    s.add(Receipt(message_id=doc.message_id, recipient=recall.sender, event=EVENT, reason=recall.reason,
                  at=now, der=der))
    rows = list(s.execute(select(DeliveryRow).where(DeliveryRow.message_id == doc.message_id)).scalars())
    kept, recalled = [], []
    told_links: set[str] = set()
    for row in rows:
        if row.state == states.SIGNED_FOR:
            kept.append(row.recipient)
        if row.state in states.OPEN:
            row.state, row.closed_at, row.reason, row.code = states.RECALLED, now, recall.reason, EVENT
            recalled.append(row.recipient)
            ctx.observer.delivery_state(states.RECALLED)
        if row.route == "paper" or row.state in (states.REJECTED, states.PAPER_ROUTE):
            continue
        route = ctx.route(row.recipient)
        if route.kind == "paper" or (origin.kind == "link" and route.link == origin.name):
            continue
        if route.link is not None:
            if route.link in told_links:
                continue
            told_links.add(route.link)
        outbox.add(s, key=recall_key(doc.message_id, row.recipient), kind=messages.RECALL, route=route, address=row.recipient, body=der)
    audit.append(s, recall.sender, "document.recall", doc.message_id, reason=recall.reason, person=recall.person,
                 recalled=recalled, kept=kept)
    sender_route = ctx.route(doc.sender)
    if sender_route.kind != "paper" and not (origin.kind == "link" and sender_route.link == origin.name):
        names = dict(s.execute(select(Unit.address, Unit.name).where(Unit.address.in_(kept))).tuples().all()) if kept else {}
        text = ("已撤销；以下单位已签收，保留该公文: " + "、".join(names.get(a, a) for a in kept)) if kept else "已撤销"
        from docex.hub.evidence import issue

        notice = issue(ctx, s, message_id=doc.message_id, event=EVENT, envelope_sha256=doc.envelope_sha256,
                       message=text, recipients=kept)
        key = messages.notice_key(doc.message_id, EVENT)
        outbox.add(s, key=key, kind=messages.NOTICE, route=sender_route, address=doc.sender, body=notice)
    log.info("recalled %s by %s: %d delivery(ies) recalled, %d kept (signed for)", doc.message_id, recall.sender,
             len(recalled), len(kept))
