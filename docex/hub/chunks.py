"""Chunks of large documents at the hub (the format: docex.protocols.chunks).

A chunk is authenticated on its own against the digest list in its document's signed
routing header (no key needed), written to the content store, recorded, and published
with confirms to every recipient queue and link queue of the document; only then is the
ingress message acknowledged. Idempotent on (message id, index): a redelivered chunk is
published again, which receivers ignore. A chunk that arrives before its envelope was
accepted is kept as `held` (bytes in the content store, not yet trusted) and released as
soon as the envelope is accepted: never lost, never passed on unauthenticated."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict

from sqlalchemy import delete, select

from docex.broker import ConfirmedPublisher, Delivery
from docex.broker.topology import link_routing_key
from docex.hub.chunk_copies import item, waiting_links
from docex.hub.context import HubContext, Origin
from docex.hub.models import Chunk, Document, HeldChunk, utcnow
from docex.hub.models import Delivery as DeliveryRow
from docex.hub.refusals import refuse
from docex.pki.errors import PkiError
from docex.protocols.chunks import ChunkList, chunk_address
from docex.protocols.envelope import read_header
from docex.protocols.errors import DocexError

log = logging.getLogger(__name__)
ROUTED = "routed"
HELD_MAX_BYTES = 16 * 1024 * 1024 + 4096  # a held chunk cannot be checked yet: no more than any chunk may be

_lists: OrderedDict[str, ChunkList | None] = OrderedDict()
_lists_lock = threading.Lock()


def chunk_list(ctx: HubContext, doc: Document) -> ChunkList | None:
    """The signed header's chunk list of an accepted document (its envelope was verified at
    intake; read back from the content store, a few recent ones cached)."""
    with _lists_lock:
        if doc.envelope_sha256 in _lists:
            return _lists[doc.envelope_sha256]
    header = read_header(ctx.content.read(doc.envelope_sha256))
    with _lists_lock:
        _lists[doc.envelope_sha256] = header.chunks
        while len(_lists) > 32:
            _lists.popitem(last=False)
    return header.chunks


def _came_the_right_way(doc: Document, origin: Origin) -> None:
    if origin.kind == "unit" and origin.name != doc.sender:
        raise DocexError("sender_mismatch", f"{origin.name} sent a chunk of {doc.sender}'s document")
    if origin.kind == "link" and doc.origin != f"link:{origin.name}":
        raise DocexError("sender_mismatch", f"a chunk of {doc.message_id} cannot arrive over link {origin.name}")


def targets(ctx: HubContext, message_id: str) -> list[tuple[str, str]]:
    """(routing key, recipient) of each copy: one per local recipient, one per link whose
    copy of the envelope has gone out (docex.hub.chunk_copies: the rest follow it)."""
    waiting = waiting_links(ctx.db, message_id)
    with ctx.db.read() as s:
        rows = s.execute(select(DeliveryRow.recipient, DeliveryRow.route)
                         .where(DeliveryRow.message_id == message_id).order_by(DeliveryRow.id)).tuples().all()
    out: list[tuple[str, str]] = []
    links: set[str] = set()
    for recipient, route in rows:
        if route == "local":
            out.append((recipient, recipient))
        elif route.startswith("link:"):
            name = route[len("link:"):]
            if name not in links and link_routing_key(name) not in waiting:
                links.add(name)
                out.append((link_routing_key(name), recipient))
    return out


def publish_copies(ctx: HubContext, publisher: ConfirmedPublisher, message_id: str, index: int, body: bytes) -> int:
    items = [item(routing_key, recipient, message_id, index, body) for routing_key, recipient in targets(ctx, message_id)]
    if items:
        publisher.publish_many(items)
    return len(items)


def handle_chunk(ctx: HubContext, delivery: Delivery, origin: Origin | None, publisher: ConfirmedPublisher) -> None:
    """The intake of one chunk message (acked by the consumer when this returns)."""
    body = delivery.body
    try:
        if origin is None:
            raise DocexError("sender_mismatch", f"a chunk from a broker user docex does not know ({delivery.user_id})")
        message_id, index = chunk_address(delivery.headers)
    except PkiError as exc:
        refuse(ctx, delivery, origin, exc.code, exc.message, publisher=publisher, name_in_notice=False)
        return
    with ctx.db.read() as s:
        doc = s.get(Document, message_id)
    if doc is None:
        _hold(ctx, delivery, origin, message_id, index)
        return
    release_held(ctx, publisher, message_id)
    try:
        _came_the_right_way(doc, origin)
        chunks = chunk_list(ctx, doc)
        if chunks is None:
            raise DocexError("chunk_invalid", f"{message_id} is not a chunked document")
        chunks.authenticate(index, body)
    except PkiError as exc:
        refuse(ctx, delivery, origin, exc.code, exc.message, message_id=message_id, publisher=publisher,
               name_in_notice=False)
        return
    _accept(ctx, publisher, message_id, index, chunks.digests[index], body, origin.user)


def _accept(ctx: HubContext, publisher: ConfirmedPublisher, message_id: str, index: int, digest: str, body: bytes,
            user: str) -> None:
    ctx.content.put(body, digest)  # durable before the row that names it commits
    with ctx.db.session() as s:
        row = s.get(Chunk, (message_id, index))
        if row is None:
            s.add(Chunk(message_id=message_id, idx=index, digest=digest, state=ROUTED, origin=user))
        elif row.digest != digest:  # cannot be: the header names one digest per index
            row.digest = digest
    publish_copies(ctx, publisher, message_id, index, body)


def _hold(ctx: HubContext, delivery: Delivery, origin: Origin, message_id: str, index: int) -> None:
    """Its envelope is not accepted yet (another worker has it in hand, or it waits at the
    ingress): keep the bytes until it is. Every copy is kept, since none can be checked yet;
    what is held is never passed on before it is."""
    body = delivery.body
    if len(body) > HELD_MAX_BYTES:
        refuse(ctx, delivery, origin, "too_large", f"a chunk of {len(body)} bytes", message_id=message_id,
               name_in_notice=False)
        return
    digest = ctx.content.put(body)
    with ctx.db.session() as s:
        seen = s.execute(select(HeldChunk.id).where(HeldChunk.message_id == message_id, HeldChunk.idx == index,
                                                    HeldChunk.digest == digest)).first()
        if seen is None:  # a redelivery of the same bytes is held once
            s.add(HeldChunk(message_id=message_id, idx=index, digest=digest, origin=origin.user))
    log.info("chunk %d of %s held until its envelope is accepted", index, message_id)


def release_held(ctx: HubContext, publisher: ConfirmedPublisher, message_id: str | None = None) -> int:
    """Check and pass on held chunks whose envelope has been accepted meanwhile. A held
    copy that does not check out is dropped and audited (its bytes stay for inspection
    until the orphan sweep)."""
    from docex.hub import audit

    query = (select(HeldChunk.id, HeldChunk.message_id, HeldChunk.idx, HeldChunk.digest, HeldChunk.origin)
             .join(Document, Document.message_id == HeldChunk.message_id).order_by(HeldChunk.id))
    if message_id is not None:
        query = query.where(HeldChunk.message_id == message_id)
    with ctx.db.read() as s:
        rows = s.execute(query.limit(200)).tuples().all()
        docs = {m: s.get(Document, m) for m in {r[1] for r in rows}}
    released = 0
    for row_id, mid, index, digest, user in rows:
        doc = docs[mid]
        assert doc is not None
        try:
            origin = ctx.origin(user)
            if origin is None:
                raise DocexError("sender_mismatch", f"a chunk from a broker user docex does not know ({user})")
            _came_the_right_way(doc, origin)
            chunks = chunk_list(ctx, doc)
            if chunks is None:
                raise DocexError("chunk_invalid", f"{mid} is not a chunked document")
            body = ctx.content.read(digest)
            chunks.authenticate(index, body)
        except PkiError as exc:
            with ctx.db.session() as s:
                s.execute(delete(HeldChunk).where(HeldChunk.id == row_id))
                audit.append(s, "hub", "chunk.reject", mid, index=index, code=exc.code, message=exc.message,
                             digest=digest)
            log.warning("held chunk %d of %s refused: [%s] %s", index, mid, exc.code, exc.message)
            continue
        _accept(ctx, publisher, mid, index, digest, body, user)
        with ctx.db.session() as s:  # passed on: no longer held (a crash before this passes it on twice)
            s.execute(delete(HeldChunk).where(HeldChunk.id == row_id))
        released += 1
    return released


def expire_held(ctx: HubContext, *, older_than: dt.timedelta = dt.timedelta(days=1)) -> int:
    """Held chunks whose envelope never came: dropped (their bytes go with the orphan sweep)."""
    cutoff = utcnow() - older_than
    with ctx.db.session() as s:
        result = s.execute(delete(HeldChunk).where(HeldChunk.received_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)


def digests_of(ctx: HubContext, message_id: str) -> list[str]:
    with ctx.db.read() as s:
        return list(s.execute(select(Chunk.digest).where(Chunk.message_id == message_id)).scalars())
