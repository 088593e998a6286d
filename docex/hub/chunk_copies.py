"""Chunks follow their envelope over a link: a chunk's copy for a link goes out only once
the envelope's copy for that link has been published (a paused or draining link holds the
envelope in the outbox, so its chunks wait with it, in the content store). When the
envelope's copy goes out at last, the chunks recorded so far follow it from the store.

The order makes it safe without a lock: a chunk is recorded before its handler looks at
the envelope's outbox row, and the row is marked published before the chunks are read
here; so each chunk is published by one side or the other (or both: receivers ignore the
second copy)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from docex.broker import ConfirmedPublisher, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE
from docex.hub.content_store import ContentStore
from docex.hub.db import Database
from docex.hub.models import Chunk, Outbox
from docex.protocols import messages

BATCH = 8  # chunks in memory at once


def waiting_links(db: Database, message_id: str) -> set[str]:
    """Link routing keys whose copy of this document's envelope has not gone out yet."""
    with db.read() as s:
        return set(s.execute(select(Outbox.routing_key).where(
            Outbox.message_id == message_id, Outbox.kind == messages.DOCUMENT, Outbox.published_at.is_(None),
            Outbox.routing_key.like("link.%"))).scalars())


def item(routing_key: str, recipient: str, message_id: str, index: int, body: bytes) -> PublishItem:
    return PublishItem(DELIVER_EXCHANGE, routing_key, body, messages.chunk_key(message_id, index),
                       headers={messages.H_RECIPIENT: recipient, messages.H_CHUNK_OF: message_id,
                                messages.H_CHUNK_INDEX: index},
                       type=messages.CHUNK)


def follow(db: Database, store: ContentStore, publisher: ConfirmedPublisher,
           sent: Iterable[tuple[str, str, str]]) -> int:
    """After envelope copies (message id, link routing key, recipient) were published and
    marked: publish the chunks of those documents recorded so far to those links."""
    total = 0
    for message_id, routing_key, recipient in dict.fromkeys(sent):
        with db.read() as s:
            rows = s.execute(select(Chunk.idx, Chunk.digest).where(Chunk.message_id == message_id)
                             .order_by(Chunk.idx)).tuples().all()
        for start in range(0, len(rows), BATCH):
            part = rows[start:start + BATCH]
            publisher.publish_many([item(routing_key, recipient, message_id, idx, store.read(digest))
                                    for idx, digest in part])
            total += len(part)
    return total
