"""The hub's transactional outbox: rows written with the state they report, published
with confirms, then marked. A crash in between republishes on redelivery; receivers are
idempotent on message id, so that is harmless."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from docex.broker import ConfirmedPublisher, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE, link_routing_key
from docex.hub import audit, states
from docex.hub.content_store import ContentStore
from docex.hub.content_store import load as load_content
from docex.hub.db import Database
from docex.hub.models import Delivery, Outbox, table_of, utcnow
from docex.monitoring.observer import Observer
from docex.protocols import messages
from docex.protocols.address import Route


def target(route: Route, address: str) -> tuple[str, str]:
    """(exchange, routing key) for an address routed locally or over a link."""
    if route.kind == "local":
        return DELIVER_EXCHANGE, address
    assert route.link is not None
    return DELIVER_EXCHANGE, link_routing_key(route.link)


def add(session: Session, *, key: str, kind: str, route: Route, address: str, body: bytes | None) -> Outbox:
    exchange, routing_key = target(route, address)
    row = Outbox(message_id=key, kind=kind, exchange=exchange, routing_key=routing_key, body=body, recipient=address)
    session.add(row)
    return row


class Row(Protocol):
    """What publishing needs of an outbox row: an ORM `Outbox` or a `Written` one."""

    @property
    def id(self) -> int: ...
    @property
    def message_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def exchange(self) -> str: ...
    @property
    def routing_key(self) -> str: ...
    @property
    def body(self) -> bytes | None: ...
    @property
    def recipient(self) -> str: ...


@dataclass(frozen=True)
class Written:
    """An outbox row inserted with Core (`add_many`): no ORM object to track."""

    id: int
    message_id: str
    kind: str
    exchange: str
    routing_key: str
    body: bytes | None
    recipient: str


def spec(*, key: str, kind: str, route: Route, address: str, body: bytes | None) -> dict[str, object]:
    """One row for `add_many`, as `add` would write it."""
    exchange, routing_key = target(route, address)
    return {"message_id": key, "kind": kind, "exchange": exchange, "routing_key": routing_key, "body": body,
            "recipient": address}


def add_many(session: Session, specs: list[dict[str, object]]) -> list[Written]:
    """Insert outbox rows in one statement (the intake's hot path); returns them with ids."""
    if not specs:
        return []
    now = utcnow()
    table = table_of(Outbox)
    ids = session.connection().execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True),
        [{**row, "created_at": now} for row in specs],
    ).scalars().all()
    return [Written(id=i, **row) for i, row in zip(ids, specs, strict=True)]  # type: ignore[arg-type]


def pending(session: Session, keys: list[str]) -> list[Outbox]:
    return list(
        session.execute(
            select(Outbox).where(Outbox.message_id.in_(keys), Outbox.published_at.is_(None)).order_by(Outbox.id)
        ).scalars()
    )


def publish_rows(publisher: ConfirmedPublisher, rows: Sequence[Row], envelopes: dict[str, bytes]) -> None:
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


def load_envelopes(session: Session, store: ContentStore, rows: Sequence[Row]) -> dict[str, bytes]:
    return load_content(session, store, {r.message_id for r in rows if r.body is None})


def mark_published(session: Session, ids: list[int]) -> None:
    if ids:
        table = table_of(Outbox)
        session.connection().execute(update(table).where(table.c.id.in_(ids)).values(published_at=utcnow()))


def deliver(db: Database, publisher: ConfirmedPublisher, rows: Sequence[Row], observer: Observer | None = None,
            *, store: ContentStore, envelopes: dict[str, bytes] | None = None) -> int:
    """Publish rows (one confirmed batch), then in one transaction mark them published and
    move the deliveries they carry from accepted to routed, audited. Envelopes are read
    from the content store; `envelopes` spares reading back one the caller still holds."""
    if not rows:
        return 0
    known = envelopes or {}
    if any(r.body is None and r.message_id not in known for r in rows):
        with db.read() as s:
            known = {**known, **load_envelopes(s, store, rows)}
    publish_rows(publisher, rows, known)
    routed: dict[str, list[str]] = {}
    for row in rows:
        if row.kind == messages.DOCUMENT:
            routed.setdefault(row.message_id, []).append(row.recipient)
    with db.session() as s:
        mark_published(s, [r.id for r in rows])
        now = utcnow()
        table = table_of(Delivery)
        for message_id, recipients in routed.items():
            s.connection().execute(
                update(table)
                .where(table.c.message_id == message_id, table.c.recipient.in_(recipients),
                       table.c.state == states.ACCEPTED)
                .values(state=states.ROUTED, routed_at=now)
            )
        # One chain append for all the documents of this publication.
        audit.append_many(s, [("hub", "document.route", message_id, {"recipients": recipients})
                              for message_id, recipients in routed.items()])
    links = list({(r.message_id, r.routing_key): (r.message_id, r.routing_key, r.recipient) for r in rows
                  if r.kind == messages.DOCUMENT and r.routing_key.startswith("link.")}.values())
    if links:  # chunks of large documents follow their envelope over a link
        from docex.hub.chunk_copies import follow

        follow(db, store, publisher, links)
    if observer is not None:
        for recipients in routed.values():
            for _ in recipients:
                observer.delivery_state(states.ROUTED)
    return len(rows)


def flush(db: Database, publisher: ConfirmedPublisher, keys: list[str], observer: Observer | None = None,
          *, store: ContentStore) -> int:
    """Publish whatever is still owed under these outbox keys."""
    with db.read() as s:
        rows = pending(s, keys)
    return deliver(db, publisher, rows, observer, store=store)
