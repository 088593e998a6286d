"""The hub's transactional outbox: rows written with the state they report, published
with confirms, then marked. A crash in between republishes on redelivery; receivers are
idempotent on message id, so that is harmless."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from docex.broker import ConfirmedPublisher, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE, link_routing_key
from docex.hub.models import Envelope, Outbox, utcnow
from docex.protocols import messages
from docex.protocols.address import Route


def target(route: Route, address: str) -> tuple[str, str]:
    """(exchange, routing key) for an address routed locally or over a link."""
    if route.kind == "local":
        return DELIVER_EXCHANGE, address
    assert route.link is not None
    return DELIVER_EXCHANGE, link_routing_key(route.link)


def add(session: Session, *, key: str, kind: str, route: Route, address: str, body: bytes | None) -> None:
    exchange, routing_key = target(route, address)
    session.add(Outbox(message_id=key, kind=kind, exchange=exchange, routing_key=routing_key, body=body, recipient=address))


def pending(session: Session, keys: list[str]) -> list[Outbox]:
    return list(
        session.execute(
            select(Outbox).where(Outbox.message_id.in_(keys), Outbox.published_at.is_(None)).order_by(Outbox.id)
        ).scalars()
    )


def publish_rows(publisher: ConfirmedPublisher, rows: list[Outbox], envelopes: dict[str, bytes]) -> None:
    """Publish outbox rows in one confirmed batch. Copies of one envelope to several
    queues share its bytes; link copies keep every recipient in the header."""
    items = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        body = row.body if row.body is not None else envelopes[row.message_id]
        # Over a link, one copy carries the document for all recipients behind it.
        dedup = (row.message_id, row.routing_key) if row.routing_key.startswith("link.") else None
        if dedup is not None:
            if dedup in seen:
                continue
            seen.add(dedup)
        items.append(
            PublishItem(
                exchange=row.exchange,
                routing_key=row.routing_key,
                body=body,
                message_id=row.message_id,
                headers={messages.H_RECIPIENT: row.recipient},
                type=row.kind,
            )
        )
    if items:
        publisher.publish_many(items)


def load_envelopes(session: Session, rows: list[Outbox]) -> dict[str, bytes]:
    wanted = {r.message_id for r in rows if r.body is None}
    if not wanted:
        return {}
    return {e.message_id: e.data for e in session.execute(select(Envelope).where(Envelope.message_id.in_(wanted))).scalars()}


def mark_published(session: Session, ids: list[int]) -> None:
    if ids:
        session.execute(update(Outbox).where(Outbox.id.in_(ids)).values(published_at=utcnow()))
