"""Large documents at the agent (the format: docex.protocols.chunks).

Sending: the small envelope goes into the outbox like any document; its big file stays on
disk and is published chunk by chunk after the envelope, with confirms, a few chunks per
round of the sender loop. `outgoing_chunks.next_index` moves only after the broker
confirmed, so a killed agent resumes at the first unconfirmed chunk (a chunk published
twice is harmless: everyone is idempotent on message id and index).

Receiving: chunks are written to AGENTDIR/chunks/<message id>/<index>.chunk as they come
(fsynced, renamed into place: idempotent), the envelope beside them once verified. When the
envelope and every chunk are there, the big file is decrypted chunk by chunk into the
inbox folder being built, its SHA-256 and the sender's detached signature checked, the
sealed PDF checked, the folder renamed into place, the document recorded and the signed
`delivered` receipt queued: all before the message that completed it is acknowledged."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from docex.agent.context import AgentContext
from docex.agent.evidence import keep_envelope
from docex.agent.store import Outgoing, OutgoingChunks, Received, Sent, SentRecipient, utcnow
from docex.broker import ConfirmedPublisher, Delivery, PublishItem
from docex.broker.topology import INGRESS_EXCHANGE, ingress_routing_key
from docex.pki.errors import PkiError
from docex.protocols import messages
from docex.protocols.chunks import (
    MAX_CHUNK_SIZE,
    OVERHEAD_BYTES,
    ChunkKey,
    ChunkList,
    chunk_address,
    read_plain_chunk,
    seal_chunk,
)
from docex.protocols.durable import write_durably
from docex.protocols.envelope import OpenedEnvelope, open_envelope, read_header
from docex.protocols.errors import DocexError
from docex.protocols.large import assemble, pack_large
from docex.protocols.manifest import Manifest
from docex.protocols.package import check_filename
from docex.protocols.receipt import envelope_digest
from docex.protocols.safepath import inside, private_dir

if TYPE_CHECKING:
    from docex.agent.receiving import Receiver
    from docex.agent.sending import Draft

log = logging.getLogger(__name__)
PER_ROUND = 4  # chunks published per round of the sender loop (it stays responsive)
CHUNKS_DIR = "chunks"
ENVELOPE_NAME = "envelope.p7m"
ABANDONED_DAYS = 30.0


# -- sending ------------------------------------------------------------------------------------
def queue_large(ctx: AgentContext, draft: Draft, big: Path, *, name: str | None = None,
                chunk_size: int | None = None) -> str:
    """`queue_document` for a document with a big file: the envelope into the outbox, the
    file's chunks owed after it. Returns the message id."""
    from docex.agent.sending import _resolve, sealed_manifest

    recipients = tuple(dict.fromkeys((*draft.to, *draft.cc)))
    resolved = _resolve(ctx, recipients)
    if resolved.unknown:
        raise DocexError("unknown_recipient", f"{', '.join(resolved.unknown)} not in the directory yet: "
                                              "send the large document once the directory knows them")
    manifest, files, main = sealed_manifest(ctx, draft)
    big = Path(big).resolve()
    packed = pack_large(manifest, files, big, ctx.creds, resolved.certs, name=name, main_document=main,
                        off_network=frozenset(resolved.off_network), chunk_size=chunk_size)
    if len(packed.envelope) > ctx.config.max_envelope_bytes:
        raise DocexError("too_large", f"the envelope is {len(packed.envelope)} bytes, over "
                                      f"{ctx.config.max_envelope_bytes}")
    with ctx.store.session() as s:
        s.add(Outgoing(kind=messages.DOCUMENT, message_id=draft.message_id, body=packed.envelope))
        s.add(OutgoingChunks(message_id=draft.message_id, path=str(big), chunk_key=packed.key.to_json(),
                             digests=json.dumps(packed.chunks.to_dict()).encode(), count=packed.chunks.count))
        keep_envelope(s, message_id=draft.message_id, role="sent", envelope=packed.envelope, inner=packed.inner)
        s.add(Sent(message_id=draft.message_id, title=draft.title, doc_number=draft.doc_number, priority=draft.priority))
        for address in recipients:
            s.add(SentRecipient(message_id=draft.message_id, recipient=address, state="queued"))
    log.info("queued %s %s with %s (%d bytes in %d chunks) for %d recipient(s)", draft.message_id,
             draft.doc_number, packed.key.name, packed.key.size, packed.chunks.count, len(recipients))
    return draft.message_id


def publish_chunks(ctx: AgentContext, publisher: ConfirmedPublisher, user: str) -> int:
    """Publish the next few chunks owed (of the oldest document whose envelope went),
    confirmed, then move its mark. Returns how many were published."""
    with ctx.store.session() as s:
        row = s.execute(
            select(OutgoingChunks).join(Outgoing, Outgoing.message_id == OutgoingChunks.message_id)
            .where(OutgoingChunks.done_at.is_(None), OutgoingChunks.error == "", Outgoing.sent_at.is_not(None))
            .order_by(Outgoing.id).limit(1)
        ).scalar_one_or_none()
    if row is None:
        return 0
    mid, start = row.message_id, row.next_index
    end = min(start + PER_ROUND, row.count)
    items = []
    try:
        key = ChunkKey.from_json(row.chunk_key)
        chunks = ChunkList.from_dict(json.loads(row.digests))
        with open(row.path, "rb") as fh:
            for index in range(start, end):
                body = seal_chunk(key, mid, index, read_plain_chunk(fh, key, index))
                if hashlib.sha256(body).hexdigest() != chunks.digests[index]:
                    raise DocexError("digest_mismatch", f"{row.path} changed after the document was queued")
                items.append(PublishItem(
                    INGRESS_EXCHANGE, ingress_routing_key(messages.CHUNK), body, messages.chunk_key(mid, index),
                    headers={messages.H_CHUNK_OF: mid, messages.H_CHUNK_INDEX: index}, user_id=user,
                    type=messages.CHUNK))
    except (OSError, ValueError, PkiError) as exc:
        text = f"[{getattr(exc, 'code', 'io_error')}] {getattr(exc, 'message', exc)}"
        with ctx.store.session() as s:
            failed = s.get(OutgoingChunks, mid)
            if failed is not None:
                failed.error = text
        log.error("large document %s: its chunks cannot be sent: %s", mid, text)
        return 0
    publisher.publish_many(items)
    with ctx.store.session() as s:
        done = s.get(OutgoingChunks, mid)
        if done is not None and done.next_index < end:
            done.next_index = end
            if end == done.count:
                done.done_at = utcnow()
    if end == row.count:
        log.info("large document %s: all %d chunks published", mid, row.count)
    return len(items)


# -- receiving ----------------------------------------------------------------------------------
_complete = threading.Lock()  # one completion at a time (consumer workers share the folder)


def _folder(ctx: AgentContext, message_id: str, *, make: bool = True) -> Path:
    root = ctx.config.home / CHUNKS_DIR
    if make:
        private_dir(root)
    path = inside(root, message_id)  # a UUID, and `inside` proves it anyway
    if make:
        private_dir(path)
    return path


def receive_chunk(ctx: AgentContext, receiver: Receiver, delivery: Delivery) -> None:
    try:
        message_id, index = chunk_address(delivery.headers)
        if len(delivery.body) > MAX_CHUNK_SIZE + OVERHEAD_BYTES:
            raise DocexError("too_large", f"a chunk of {len(delivery.body)} bytes")
    except PkiError as exc:
        log.warning("ignored a chunk: [%s] %s", exc.code, exc.message)
        return
    with ctx.store.session() as s:
        if s.get(Received, message_id) is not None:
            return  # a redelivery after the document was complete
    write_durably(_folder(ctx, message_id) / f"{index}.chunk", delivery.body, once=True)
    try_complete(ctx, receiver, message_id)


def envelope_arrived(ctx: AgentContext, receiver: Receiver, body: bytes, message_id: str) -> None:
    """A verified envelope that announces chunks: kept beside them until they are all here."""
    write_durably(_folder(ctx, message_id) / ENVELOPE_NAME, body, once=True)
    try_complete(ctx, receiver, message_id)


def try_complete(ctx: AgentContext, receiver: Receiver, message_id: str) -> bool:
    """Deliver the document if its envelope and every chunk are here. True once delivered."""
    with _complete:
        folder = _folder(ctx, message_id, make=False)
        with ctx.store.session() as s:
            done = s.get(Received, message_id) is not None
        if done:
            shutil.rmtree(folder, ignore_errors=True)
            return True
        env_path = folder / ENVELOPE_NAME
        if not env_path.exists():
            return False
        body = env_path.read_bytes()
        chunks = read_header(body).chunks
        if chunks is None or any(not (folder / f"{i}.chunk").exists() for i in range(chunks.count)):
            return False
        digest = envelope_digest(body)
        target = inside(ctx.config.inbox, message_id)
        try:
            opened = open_envelope(body, ctx.creds, ctx.trust, max_size=ctx.config.max_envelope_bytes)
            opened.manifest.validate()
            seal_status = receiver._check_seal(opened.files, opened.manifest)
            key = opened.chunk_key
            assert key is not None and opened.header.chunks is not None
            if not target.exists():
                _build(ctx, target, opened.files, opened.manifest, key, folder, opened)
        except PkiError as exc:
            receiver._quarantine(body, message_id, digest, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return False
        receiver._record(body, digest, opened, seal_status, target)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("large document %s complete: %s, %d bytes", message_id, key.name, key.size)
        return True


def _build(ctx: AgentContext, target: Path, files: dict[str, bytes], manifest: Manifest, key: ChunkKey,
           folder: Path, opened: OpenedEnvelope) -> None:
    """The inbox folder, all or nothing: small files, the big file decrypted chunk by chunk,
    the sender's detached signature over it; fsynced, then renamed into place."""
    assert opened.header.chunks is not None
    big_name = check_filename(key.name)
    sig_name = check_filename(f"{big_name}.p7s")
    if sig_name in files:
        raise DocexError("unsafe_filename", f"{sig_name!r} is both a file of the package and the big file's signature")
    private_dir(ctx.config.inbox)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=ctx.config.inbox))
    try:
        for name, data in {**files, "manifest.json": manifest.to_json(), sig_name: key.signature}.items():
            path = inside(tmp, check_filename(name) if name != "manifest.json" else name)
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

        def read(index: int) -> bytes | None:
            path = folder / f"{index}.chunk"
            return path.read_bytes() if path.exists() else None

        assemble(key, opened.header.chunks, manifest.message_id, read, inside(tmp, big_name), ctx.trust,
                 opened.signer)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_leftovers(ctx: AgentContext, *, abandoned_days: float = ABANDONED_DAYS) -> int:
    """Chunk folders of documents already delivered (a kill between the record and the
    clean-up), and of transfers nothing was added to for `abandoned_days` (a sender that
    never finished: its hub delivered the envelope and part of the file)."""
    root = ctx.config.home / CHUNKS_DIR
    if not root.is_dir():
        return 0
    folders = [p for p in root.iterdir() if p.is_dir()]
    names = [p.name for p in folders]
    with ctx.store.session() as s:
        done = set(s.execute(select(Received.message_id).where(Received.message_id.in_(names))).scalars()) if names else set()
    cutoff = time.time() - abandoned_days * 86400
    removed = 0
    for folder in folders:
        newest = max((p.stat().st_mtime for p in folder.iterdir()), default=folder.stat().st_mtime)
        if folder.name in done or newest < cutoff:
            if folder.name not in done:
                log.warning("large document %s: no chunk for %s days, its %d piece(s) removed", folder.name,
                            abandoned_days, sum(1 for _ in folder.glob("*.chunk")))
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
