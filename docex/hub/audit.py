"""The append-only, hash-chained audit log. Each entry's hash covers the previous hash
and the entry itself, so changing or deleting any entry breaks every hash after it;
`docex audit verify` walks the chain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from docex.hub.db import OPERATOR_FLAG
from docex.hub.models import AuditEntry, Setting, table_of, utcnow
from docex.protocols.checkpoint import GENESIS, entry_hash

__all__ = ["GENESIS", "HEAD_KEY", "ChainReport", "append", "append_many", "entry_hash", "verify_chain"]

HEAD_KEY = "audit_head"
# Actions an operator takes (not the hub's own traffic): each is followed by a signed,
# timestamped checkpoint of the chain (docex.hub.checkpoints) once its transaction commits.
OPERATOR_ACTIONS = ("unit.", "seal.", "link.", "user.", "pki.", "certificate.revoke")


def append(session: Session, actor: str, action: str, subject: str = "", **detail: Any) -> AuditEntry:
    """Append one entry inside the caller's transaction. The head row is locked (FOR
    UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers), so
    competing hub workers extend one chain."""
    # The head's value as a column, not an ORM object: this runs for every message the hub
    # handles, and the identity-map bookkeeping cost more than the SQL.
    prev = session.execute(
        select(Setting.value).where(Setting.key == HEAD_KEY).with_for_update()
    ).scalar_one_or_none()
    at = utcnow()
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    digest = entry_hash(prev or GENESIS, at, actor, action, subject, text)
    entry = AuditEntry(at=at, actor=actor, action=action, subject=subject, detail=text,
                       prev_hash=prev or GENESIS, hash=digest)
    session.add(entry)
    if action.startswith(OPERATOR_ACTIONS):
        session.info[OPERATOR_FLAG] = action
    if prev is None:
        session.add(Setting(key=HEAD_KEY, value=digest))
    else:
        # Core UPDATE: the next append of this transaction re-reads the head with SQL too.
        session.execute(update(Setting).where(Setting.key == HEAD_KEY).values(value=digest),
                        execution_options={"synchronize_session": False})
    return entry


def append_many(session: Session, entries: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    """Append (actor, action, subject, detail) entries in this order, inside the caller's
    transaction: the head is read and locked once and written once, the entries inserted
    in one statement (Core, no ORM objects). The chain is the same as appending them one
    by one: each entry's hash covers the one before it."""
    if not entries:
        return
    # Entries the caller added through the ORM go first: their ids come before ours.
    session.flush()
    prev = session.execute(
        select(Setting.value).where(Setting.key == HEAD_KEY).with_for_update()
    ).scalar_one_or_none()
    head = prev or GENESIS
    at = utcnow()
    rows = []
    for actor, action, subject, detail in entries:
        text = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
        digest = entry_hash(head, at, actor, action, subject, text)
        rows.append({"at": at, "actor": actor, "action": action, "subject": subject, "detail": text,
                     "prev_hash": head, "hash": digest})
        head = digest
        if action.startswith(OPERATOR_ACTIONS):
            session.info[OPERATOR_FLAG] = action
    conn = session.connection()
    # One row at a time would cost a round of statement compilation each; executemany
    # inserts them in the order given, so the ids follow the chain.
    conn.execute(insert(table_of(AuditEntry)), rows)
    if prev is None:
        conn.execute(insert(table_of(Setting)), [{"key": HEAD_KEY, "value": head}])
    else:
        conn.execute(update(table_of(Setting)).where(table_of(Setting).c.key == HEAD_KEY).values(value=head))


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad: int | None = None
    problem: str = ""


def verify_chain(session: Session, batch: int = 5000) -> ChainReport:
    prev = GENESIS
    count = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id).limit(batch)
        ).scalars().all()
        if not rows:
            break
        for row in rows:
            if row.prev_hash != prev:
                return ChainReport(False, count, row.id, "an entry before it was removed or changed")
            if entry_hash(row.prev_hash, row.at, row.actor, row.action, row.subject, row.detail) != row.hash:
                return ChainReport(False, count, row.id, "the entry was changed after it was written")
            prev = row.hash
            count += 1
            last_id = row.id
    head = session.get(Setting, HEAD_KEY)
    if head is not None and head.value != prev:
        return ChainReport(False, count, None, "entries at the end of the log were removed")
    return ChainReport(True, count)
