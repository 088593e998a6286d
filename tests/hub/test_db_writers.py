"""Writers of one process take turns on SQLite's single write lock in Python: every write
transaction of many threads commits (none fails with "database is locked"), reads are never
held up by the turn, and PostgreSQL URLs get no lock."""

from __future__ import annotations

import threading

from sqlalchemy import select

from docex.hub.db import Database
from docex.hub.models import Setting


def test_threads_take_turns_and_all_commit(db: Database) -> None:
    errors: list[BaseException] = []

    def bump(index: int) -> None:
        try:
            for n in range(20):
                with db.session() as s:
                    s.add(Setting(key=f"w{index}-{n}", value="x"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with db.read() as s:
        keys = set(s.execute(select(Setting.key).where(Setting.key.like("w%"))).scalars())
    assert len(keys) == 6 * 20


def test_a_reader_is_not_held_by_a_writer(db: Database) -> None:
    with db.session() as s:
        s.add(Setting(key="seen", value="1"))
    with db.session() as s:  # a write transaction is open in this thread...
        s.add(Setting(key="later", value="2"))
        out: list[str | None] = []
        reader = threading.Thread(target=lambda: out.append(_read(db, "seen")))
        reader.start()
        reader.join(10)
        assert out == ["1"]  # ...and another thread still reads the committed state


def _read(db: Database, key: str) -> str | None:
    with db.read() as s:
        row = s.get(Setting, key)
        return row.value if row else None


def test_the_turn_is_per_database_file_and_only_for_sqlite(db: Database) -> None:
    again = Database(db.url)
    try:
        assert again._write_lock is db._write_lock
    finally:
        again.dispose()
    pg = Database("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        assert pg._write_lock is None
    finally:
        pg.dispose()
