"""`AgentStore.changed()`: the cheap gate of the outbox poll. It must see every commit made
after the previous call (by this process or another), so that no outbox row waits for
more than one poll, and report nothing when nothing was committed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from docex.agent.store import AgentStore, Outgoing


def test_changed_sees_every_commit_and_nothing_else(tmp_path: Path) -> None:
    store = AgentStore(f"sqlite:///{tmp_path / 'agent.db'}")
    try:
        assert store.changed() is True  # the first call: go and look
        assert store.changed() is False
        with store.session() as s:
            s.add(Outgoing(kind="receipt", message_id="m1", body=b"r"))
        assert store.changed() is True
        assert store.changed() is False
        with store.session() as s:  # a read-only transaction commits nothing
            s.get(Outgoing, 1)
        assert store.changed() is False
        # Another process (`docex send` while the service runs) writes the same file.
        other = sqlite3.connect(tmp_path / "agent.db")
        other.execute("INSERT INTO outgoing (kind, message_id, body, created_at, attempts, last_error) "
                      "VALUES ('document', 'm2', x'00', '2011-08-25 09:00:00', 0, '')")
        other.commit()
        other.close()
        assert store.changed() is True
    finally:
        store.dispose()
    assert store.changed() is True  # after dispose(): a fresh connection, which looks once
    store.dispose()
