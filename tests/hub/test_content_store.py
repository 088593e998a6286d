"""The hub's content store: envelope bytes on disk by digest, read back for republishing,
envelopes of earlier releases moved out of the database, and retention after the last
delivery closed (the record, evidence and audit stay)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid

import pytest
from sqlalchemy import select

from docex.hub import audit, content_store
from docex.hub.content_store import ContentStore
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.models import (
    AuditEntry,
    Chunk,
    Delivery,
    Document,
    Envelope,
    EvidenceRecord,
    HeldChunk,
    utcnow,
)
from docex.protocols.errors import DocexError

SENDER, TO = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"


def _document(db: Database, store: ContentStore, data: bytes, *, state: str = "signed_for",
              closed_days_ago: float | None = 40.0, legacy: bool = False) -> tuple[str, str]:
    mid = str(uuid.uuid4())
    digest = hashlib.sha256(data).hexdigest()
    now = utcnow()
    closed = now - dt.timedelta(days=closed_days_ago) if closed_days_ago is not None else None
    if not legacy:
        store.put(data, digest)
    with db.session() as s:
        s.add(Document(message_id=mid, sender=SENDER, size=len(data), envelope_sha256=digest,
                       created_at=now - dt.timedelta(days=50), accepted_at=now - dt.timedelta(days=50)))
        s.flush()
        if legacy:
            s.add(Envelope(message_id=mid, data=data))
        s.add(Delivery(message_id=mid, recipient=TO, state=state, closed_at=closed))
        s.add(EvidenceRecord(message_id=mid, event="accepted", issuer="qingyuan.yangshan", digest=uuid.uuid4().hex,
                             der=b"evidence"))
        audit.append(s, "hub", "document.accept", mid, digest=digest)
    return mid, digest


def test_bytes_are_stored_by_digest_and_read_back(tmp_path: os.PathLike[str]) -> None:
    store = ContentStore.of(tmp_path)  # type: ignore[arg-type]
    data = b"envelope" * 1000
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.read(digest) == data and store.size(digest) == len(data)
    assert store.put(data) == digest  # the same bytes again: the same file
    assert oct(store.path(digest).stat().st_mode & 0o777) == "0o600"
    assert oct((store.root / "sha256").stat().st_mode & 0o777) == "0o700"
    streamed, size = store.put_stream(iter([b"a" * 10, b"b" * 5]))
    assert size == 15 and store.read(streamed) == b"a" * 10 + b"b" * 5
    assert list((store.root / "tmp").iterdir()) == []  # nothing left half written


def test_a_stream_of_other_bytes_than_announced_is_not_stored(tmp_path: os.PathLike[str]) -> None:
    store = ContentStore.of(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DocexError) as exc:
        store.put_stream(iter([b"tampered"]), expect=hashlib.sha256(b"original").hexdigest())
    assert exc.value.code == "digest_mismatch"
    with pytest.raises(DocexError) as exc:
        store.put_stream(iter([b"x" * 10, b"x" * 10]), max_bytes=15)
    assert exc.value.code == "too_large"
    assert list(store.digests()) == [] and list((store.root / "tmp").iterdir()) == []


@pytest.mark.parametrize("digest", ["../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x", ""])
def test_a_digest_never_builds_another_path(tmp_path: os.PathLike[str], digest: str) -> None:
    store = ContentStore.of(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DocexError) as exc:
        store.path(digest)
    assert exc.value.code == "malformed_envelope"


def test_missing_content_is_a_named_error(tmp_path: os.PathLike[str]) -> None:
    store = ContentStore.of(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DocexError) as exc:
        store.read("0" * 64)
    assert exc.value.code == "content_missing"


def test_envelopes_come_from_the_store_or_an_earlier_releases_table(ctx: HubContext) -> None:
    store = ctx.content
    new, _ = _document(ctx.db, store, b"new envelope")
    old, old_digest = _document(ctx.db, store, b"old envelope", legacy=True)
    with ctx.db.read() as s:
        assert content_store.load(s, store, [new, old]) == {new: b"new envelope", old: b"old envelope"}
    assert content_store.adopt_legacy(ctx.db, store) == 1
    assert store.read(old_digest) == b"old envelope"
    with ctx.db.read() as s:
        assert s.execute(select(Envelope)).first() is None
        assert content_store.envelope_of(s, store, old) == b"old envelope"


def test_retention_removes_content_of_closed_documents_and_keeps_evidence_and_audit(ctx: HubContext) -> None:
    store = ctx.content
    days = ctx.config.limits.content_retention_days
    closed, closed_digest = _document(ctx.db, store, b"closed long ago")
    legacy, _ = _document(ctx.db, store, b"closed, legacy row", legacy=True)
    recent, recent_digest = _document(ctx.db, store, b"closed yesterday", closed_days_ago=1)
    still_open, open_digest = _document(ctx.db, store, b"not signed for yet", state="delivered", closed_days_ago=None)

    purged = content_store.purge(ctx.db, store, retention_days=days)
    assert sorted(purged) == sorted([closed, legacy])
    assert not store.has(closed_digest)
    assert store.has(recent_digest) and store.has(open_digest)
    with ctx.db.read() as s:
        assert s.get(Document, closed).content_purged_at is not None
        assert s.get(Document, recent).content_purged_at is None and s.get(Document, still_open).content_purged_at is None
        assert s.execute(select(Envelope)).first() is None
        assert len(s.execute(select(EvidenceRecord).where(EvidenceRecord.message_id == closed)).all()) == 1
        actions = [a for a in s.execute(select(AuditEntry.action).where(AuditEntry.subject == closed)).scalars()]
        assert actions == ["document.accept", "document.content_purged"]
        assert audit.verify_chain(s).ok
        assert content_store.load(s, store, [closed]) == {}
    assert content_store.purge(ctx.db, store, retention_days=days) == []  # once


def test_an_evidence_export_after_retention_says_so(ctx: HubContext) -> None:
    from docex.hub.evidence import export

    mid, _ = _document(ctx.db, ctx.content, b"closed long ago")
    content_store.purge(ctx.db, ctx.content, retention_days=ctx.config.limits.content_retention_days)
    with pytest.raises(DocexError) as exc:
        export(ctx, mid, stamper=None)  # type: ignore[arg-type]
    assert exc.value.code == "content_purged"


def test_files_no_document_names_are_swept_after_a_day(ctx: HubContext) -> None:
    store = ctx.content
    _, kept = _document(ctx.db, store, b"named")
    orphan = store.put(b"written, then the commit failed")
    fresh = store.put(b"written a moment ago, its commit may be coming")
    day_old = dt.datetime.now().timestamp() - 2 * 86400
    for digest in (kept, orphan):
        os.utime(store.path(digest), (day_old, day_old))
    assert content_store.sweep_orphans(ctx.db, store) == 1
    assert store.has(kept) and store.has(fresh) and not store.has(orphan)


def test_retention_and_the_sweep_know_chunks(ctx: HubContext) -> None:
    store = ctx.content
    mid, _ = _document(ctx.db, store, b"a large document's envelope")
    pieces = [store.put(f"chunk {i}".encode()) for i in range(3)]
    held = store.put(b"a chunk ahead of its envelope")
    with ctx.db.session() as s:
        for i, digest in enumerate(pieces):
            s.add(Chunk(message_id=mid, idx=i, digest=digest))
        s.add(HeldChunk(message_id=str(uuid.uuid4()), idx=0, digest=held))
    day_old = dt.datetime.now().timestamp() - 2 * 86400
    for digest in (*pieces, held):
        os.utime(store.path(digest), (day_old, day_old))
    assert content_store.sweep_orphans(ctx.db, store) == 0  # every one is named
    assert content_store.purge(ctx.db, store, retention_days=ctx.config.limits.content_retention_days) == [mid]
    assert not any(store.has(d) for d in pieces) and store.has(held)
    with ctx.db.read() as s:
        assert s.execute(select(Chunk).where(Chunk.message_id == mid)).first() is None
