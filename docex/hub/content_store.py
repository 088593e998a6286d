"""The hub's content store: envelope and chunk bytes on disk (HUBDIR/content), addressed by
their SHA-256, instead of inside the tracking database.

A file is written aside, fsynced, renamed into place and its folder fsynced, all before
the transaction that references it commits: a row never names bytes that a crash could
lose. The same bytes written twice (a redelivery) land on the same name; a crash between
the write and the commit leaves a file nothing names, which the retention job removes.
Retention (`purge`) deletes the content of documents whose every delivery reached a final
state more than `limits.content_retention_days` ago; the document row, its evidence, its
receipts and the audit chain stay."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import and_, delete, exists, not_, or_, select
from sqlalchemy.orm import Session

from docex.hub import audit, states
from docex.hub.db import Database
from docex.hub.models import Chunk, Delivery, Document, Envelope, HeldChunk, utcnow
from docex.protocols.errors import DocexError
from docex.protocols.safepath import private_dir

log = logging.getLogger(__name__)
CONTENT_DIR = "content"
_HEX64 = re.compile(r"[0-9a-f]{64}")
BLOCK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """Files under `root/sha256/<2 hex>/<64 hex>`; `root/tmp` holds writes in progress."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def of(cls, home: Path) -> ContentStore:
        return cls(Path(home) / CONTENT_DIR)

    def path(self, digest: str) -> Path:
        """Where the bytes of `digest` live. A digest is 64 lowercase hex or refused: it is
        never allowed to build any other path."""
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise DocexError("malformed_envelope", f"not a SHA-256 digest: {str(digest)[:80]!r}")
        return self.root / "sha256" / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    # -- writing ------------------------------------------------------------------------------
    def _tmp(self) -> Path:
        return private_dir(self.root / "tmp") / f"{uuid.uuid4().hex}.part"

    def _commit(self, tmp: Path, digest: str) -> str:
        final = self.path(digest)
        folder = final.parent
        if not folder.is_dir():
            private_dir(self.root)
            private_dir(self.root / "sha256")
            private_dir(folder)
            _fsync_dir(folder.parent)
        os.replace(tmp, final)  # the same bytes again replace themselves: harmless
        _fsync_dir(folder)
        return digest

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store `data` durably; returns its SHA-256 (hex). `digest`, when the caller has
        it already, spares hashing the bytes again."""
        digest = digest or hashlib.sha256(data).hexdigest()
        if self.has(digest):
            return digest
        tmp = self._tmp()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return self._commit(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_stream(self, blocks: Iterable[bytes], *, expect: str | None = None,
                   max_bytes: int | None = None) -> tuple[str, int]:
        """Store bytes arriving in pieces (never all in memory); returns (digest, size).
        With `expect`, bytes of another digest are refused (`digest_mismatch`) and nothing
        is stored; past `max_bytes`, `too_large`."""
        tmp = self._tmp()
        h = hashlib.sha256()
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                for block in blocks:
                    size += len(block)
                    if max_bytes is not None and size > max_bytes:
                        raise DocexError("too_large", f"more than {max_bytes} bytes")
                    h.update(block)
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            digest = h.hexdigest()
            if expect is not None and digest != expect:
                raise DocexError("digest_mismatch", f"the bytes have digest {digest[:16]}…, not {expect[:16]}…")
            return self._commit(tmp, digest), size
        finally:
            tmp.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------------
    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise DocexError("content_missing", f"no content {digest[:16]}… in the hub's content store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise DocexError("content_missing", f"no content {digest[:16]}… in the hub's content store") from None

    def iter_blocks(self, digest: str, block: int = BLOCK) -> Iterator[bytes]:
        with self.open(digest) as fh:
            while piece := fh.read(block):
                yield piece

    # -- removing -----------------------------------------------------------------------------
    def delete(self, digest: str) -> bool:
        path = self.path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> Iterator[tuple[str, float]]:
        """Every stored digest with its file's mtime."""
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for folder in base.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if _HEX64.fullmatch(path.name):
                    yield path.name, path.stat().st_mtime

    def clean_tmp(self, older_than: float = 3600.0) -> int:
        """Writes a crash left half done."""
        folder = self.root / "tmp"
        if not folder.is_dir():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for path in folder.iterdir():
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


# -- the envelopes of documents ------------------------------------------------------------------
def load(session: Session, store: ContentStore, message_ids: Iterable[str]) -> dict[str, bytes]:
    """The envelopes of these documents: from the content store, or from the `envelopes`
    table where a hub of an earlier release kept them (until `adopt_legacy` moves them)."""
    wanted = set(message_ids)
    if not wanted:
        return {}
    found: dict[str, bytes] = {}
    rows = session.execute(select(Document.message_id, Document.envelope_sha256)
                           .where(Document.message_id.in_(wanted))).tuples().all()
    for message_id, digest in rows:
        try:
            found[message_id] = store.read(digest)
        except DocexError:
            continue
    missing = wanted - set(found)
    if missing:
        for row in session.execute(select(Envelope).where(Envelope.message_id.in_(missing))).scalars():
            found[row.message_id] = row.data
    return found


def envelope_of(session: Session, store: ContentStore, message_id: str) -> bytes | None:
    return load(session, store, [message_id]).get(message_id)


def adopt_legacy(db: Database, store: ContentStore, *, batch: int = 50) -> int:
    """Move envelopes an earlier release kept in the database into the content store
    (each file durable before its row goes). Returns how many moved."""
    moved = 0
    while True:
        with db.read() as s:
            rows = s.execute(select(Envelope.message_id, Envelope.data).limit(batch)).tuples().all()
        if not rows:
            return moved
        for _mid, data in rows:
            store.put(data)
        with db.session() as s:
            s.execute(delete(Envelope).where(Envelope.message_id.in_([m for m, _ in rows])))
        moved += len(rows)
        log.info("content store: moved %d envelope(s) out of the database", len(rows))


def purge(db: Database, store: ContentStore, *, retention_days: float, now: dt.datetime | None = None,
          limit: int = 500) -> list[str]:
    """Delete the content of documents every delivery of which reached a final state more
    than `retention_days` ago. The document, its deliveries, receipts, evidence and the
    audit chain stay; each purge is audited. Returns the message ids purged."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=retention_days)
    still_open = exists().where(
        Delivery.message_id == Document.message_id,
        or_(Delivery.state.not_in(states.FINAL), Delivery.closed_at.is_(None), Delivery.closed_at >= cutoff),
    )
    with db.read() as s:
        docs = s.execute(
            select(Document.message_id, Document.envelope_sha256)
            .where(and_(Document.content_purged_at.is_(None), Document.accepted_at < cutoff, not_(still_open)))
            .order_by(Document.accepted_at).limit(limit)
        ).tuples().all()
    if not docs:
        return []
    with db.read() as s:
        chunk_digests = s.execute(select(Chunk.digest).where(Chunk.message_id.in_([m for m, _ in docs]))).scalars()
        for chunk_digest in chunk_digests:
            store.delete(chunk_digest)
    for _message_id, digest in docs:
        store.delete(digest)  # first the bytes, then the mark: a crash in between purges again
    with db.session() as s:
        for message_id, _digest in docs:
            doc = s.get(Document, message_id)
            if doc is None or doc.content_purged_at is not None:
                continue
            doc.content_purged_at = now
            s.execute(delete(Envelope).where(Envelope.message_id == message_id))
            s.execute(delete(Chunk).where(Chunk.message_id == message_id))
            audit.append(s, "hub", "document.content_purged", message_id, retention_days=retention_days)
    log.info("content store: purged the content of %d document(s) closed over %s days ago", len(docs), retention_days)
    return [m for m, _ in docs]


def sweep_orphans(db: Database, store: ContentStore, *, older_than: float = 86400.0) -> int:
    """Files no document names (a crash between the write and the commit, a replay refused
    after its bytes were written), older than a day, and abandoned temporary writes."""
    removed = store.clean_tmp(older_than=min(older_than, 3600.0))
    cutoff = time.time() - older_than
    candidates = [d for d, mtime in store.digests() if mtime < cutoff]
    for start in range(0, len(candidates), 500):
        part = candidates[start:start + 500]
        with db.read() as s:
            named = set(s.execute(select(Document.envelope_sha256).where(Document.envelope_sha256.in_(part))).scalars())
            named |= set(s.execute(select(Chunk.digest).where(Chunk.digest.in_(part))).scalars())
            named |= set(s.execute(select(HeldChunk.digest).where(HeldChunk.digest.in_(part))).scalars())
        for digest in part:
            if digest not in named and store.delete(digest):
                removed += 1
    if removed:
        log.info("content store: removed %d unreferenced file(s)", removed)
    return removed
