"""The agent's local store: created on first use, versioned, and its uniqueness rules are
what make redeliveries harmless (one outbox row per key, one quarantine per digest, one
kept notice per digest, one sent-view row per recipient)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from docex.agent.store import AgentStore, Notice, Outgoing, Quarantined, SentRecipient, Setting


@pytest.fixture
def store(tmp_path: Path) -> AgentStore:
    return AgentStore(f"sqlite:///{tmp_path / 'agent.db'}")


def test_schema_is_created_and_versioned(store: AgentStore, tmp_path: Path) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {"outgoing", "sent", "sent_recipients", "received", "quarantine", "notices", "settings"} <= tables
    with store.session() as s:
        version = s.get(Setting, "schema_version")
    assert version is not None and version.value == "1"
    again = AgentStore(f"sqlite:///{tmp_path / 'agent.db'}")  # opening again changes nothing
    with again.session() as s:
        assert s.get(Setting, "schema_version") is not None
    again.dispose()


@pytest.mark.parametrize("rows", [
    (Outgoing(kind="document", message_id="m1", body=b"a"), Outgoing(kind="document", message_id="m1", body=b"b")),
    (Quarantined(message_id="m1", digest="d" * 64, code="x", message="", path="p"),
     Quarantined(message_id="m2", digest="d" * 64, code="y", message="", path="q")),
    (Notice(message_id="m1", event="rejected", digest="e" * 64, der=b"n"),
     Notice(message_id="m1", event="rejected", digest="e" * 64, der=b"n")),
    (SentRecipient(message_id="m1", recipient="a"), SentRecipient(message_id="m1", recipient="a")),
])
def test_duplicates_cannot_be_stored(store: AgentStore, rows: tuple[object, object]) -> None:
    with store.session() as s:
        s.add(rows[0])
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(rows[1])


def test_a_failed_transaction_leaves_nothing(store: AgentStore) -> None:
    with pytest.raises(RuntimeError), store.session() as s:
        s.add(Outgoing(kind="receipt", message_id="r1", body=b"x"))
        s.flush()
        raise RuntimeError("crash before commit")
    with store.session() as s:
        assert s.get(Outgoing, 1) is None


def test_a_store_made_before_the_waiting_documents_had_their_cover_gets_the_columns(tmp_path: Path) -> None:
    """agent.db files whose awaiting_trust table predates its cover columns keep their rows."""
    import sqlite3

    from docex.agent.store import awaiting_trust

    path = tmp_path / "agent.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE awaiting_trust (digest VARCHAR(64) PRIMARY KEY, message_id VARCHAR(200), "
                   "body BLOB, since DATETIME)")
        db.execute("INSERT INTO awaiting_trust VALUES ('d1', 'm1', x'00', '2026-12-02 10:00:00')")
    db.close()
    store = AgentStore(f"sqlite:///{path}")
    with store.session() as s:
        rows = awaiting_trust(s)
    assert [(r.message_id, r.sender, r.title) for r in rows] == [("m1", "", "")]
    store.dispose()
    AgentStore(f"sqlite:///{path}").dispose()  # opening again changes nothing
