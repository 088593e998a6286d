"""Engine and sessions for the tracking store, and schema migrations (Alembic)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from docex.protocols.safepath import private_sqlite

MIGRATIONS = Path(__file__).parent / "migrations"
OPERATOR_FLAG = "docex_operator_action"  # session.info key set by audit.append


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        private_sqlite(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling is off so that we can BEGIN IMMEDIATE:
            # writers take the lock up front instead of failing on upgrade (SQLITE_BUSY).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the lock up front; readers (the API, the CLI) never block them.
            conn.exec_driver_sql("BEGIN" if conn.info.get("read_only") else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def migrate(url: str) -> None:
    """Bring the schema to the newest migration."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _sqlite_write_lock(url: str) -> threading.RLock | None:
    if not url.startswith("sqlite"):
        return None
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(url, threading.RLock())


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Threads of this process queue for it here, woken
        # as soon as it is free, instead of in SQLite's busy handler, which sleeps up to
        # 100 ms between tries (latency tails, idle CPUs under load).
        self._write_lock = _sqlite_write_lock(url)
        # Called with the action's name after a transaction that audited an operator
        # action commits (docex.hub.checkpoints.open_database sets it).
        self.after_operator_action: Callable[[str], None] | None = None

    @contextmanager
    def _writer(self) -> Iterator[None]:
        lock = self._write_lock
        if lock is None:
            yield
            return
        # The same patience as SQLite's own busy timeout (30 s), then the same failure.
        if not lock.acquire(timeout=30):
            raise TimeoutError("数据库忙 (database is locked): no write turn within 30 s")
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self._writer(), self._sessions() as session:
            with session.begin():
                yield session
            action = session.info.pop(OPERATOR_FLAG, None)
        if action is not None and self.after_operator_action is not None:
            self.after_operator_action(action)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (never takes SQLite's write lock)."""
        with self.engine.connect() as conn:
            conn.info["read_only"] = True
            try:
                with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                    yield session
            finally:
                conn.info.pop("read_only", None)

    def dispose(self) -> None:
        self.engine.dispose()
