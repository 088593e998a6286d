"""The hash-chained audit log: every change, removal or reordering of an entry is found,
and the chain hashes the same on SQLite (naive times) and PostgreSQL (aware times)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update

from docex.hub import audit
from docex.hub.db import Database
from docex.hub.models import AuditEntry, Setting


def _fill(db: Database, n: int = 5) -> list[int]:
    ids = []
    for i in range(n):
        with db.session() as s:
            entry = audit.append(s, "hub", "document.accept", f"m{i}", sender="qingyuan.yangshan.xxzx", n=i)
            s.flush()
            ids.append(entry.id)
    return ids


def _verify(db: Database) -> audit.ChainReport:
    with db.read() as s:
        return audit.verify_chain(s)


def test_an_untouched_chain_verifies(db: Database) -> None:
    assert _verify(db) == audit.ChainReport(True, 0)
    _fill(db)
    report = _verify(db)
    assert report.ok and report.entries == 5
    with db.read() as s:
        rows = s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        head = s.get(Setting, audit.HEAD_KEY)
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    assert head is not None and head.value == rows[-1].hash


def test_an_updated_entry_is_found(db: Database) -> None:
    ids = _fill(db)
    with db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.id == ids[2]).values(detail='{"n": 99}'))
    report = _verify(db)
    assert not report.ok and report.first_bad == ids[2] and "changed" in report.problem and report.entries == 2


def test_an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link(db: Database) -> None:
    ids = _fill(db)
    with db.session() as s:
        row = s.get(AuditEntry, ids[1])
        assert row is not None
        row.actor = "intruder"
        row.hash = audit.entry_hash(row.prev_hash, row.at, row.actor, row.action, row.subject, row.detail)
    report = _verify(db)
    assert not report.ok and report.first_bad == ids[2]


def test_a_deleted_entry_is_found(db: Database) -> None:
    ids = _fill(db)
    with db.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.id == ids[1]))
    report = _verify(db)
    assert not report.ok and report.first_bad == ids[2] and "removed" in report.problem


def test_entries_cut_from_the_end_are_found(db: Database) -> None:
    ids = _fill(db)
    with db.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids[-2:])))
    report = _verify(db)
    assert not report.ok and report.first_bad is None and "end" in report.problem


def test_the_chain_continues_across_transactions_and_in_batches(db: Database) -> None:
    _fill(db, 7)
    with db.read() as s:
        assert audit.verify_chain(s, batch=2).ok


def test_naive_and_aware_times_hash_alike() -> None:
    aware = dt.datetime(2011, 8, 25, 9, 30, 0, 123456, tzinfo=dt.UTC)
    shanghai = aware.astimezone(dt.timezone(dt.timedelta(hours=8)))
    naive = aware.replace(tzinfo=None)
    hashes = {audit.entry_hash(audit.GENESIS, t, "hub", "x", "s", "{}") for t in (aware, shanghai, naive)}
    assert len(hashes) == 1
