"""Upgrades: a tracking database at the previous release's schema, holding documents,
deliveries, an envelope kept in the database (as that release did) and an audit chain,
upgrades to this release's head with nothing lost: tracking reads it, the envelope is read
and then moved to the content store, the audit chain still verifies and takes new entries.

docex has no tagged release yet (`git tag` is empty). The previous release is commit
a509041 (26 November 2026, alembic revision 0002), the last state before the content store
and evidence changed the schema. Its schema is frozen in tests/hub/previous_release/,
dumped from a database that commit's own migrations made (SQLite and PostgreSQL), so an
edit of an old migration file cannot change what the test starts from; a separate test
checks that today's 0001-0002 still make that same schema."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from docex.hub import audit, content_store
from docex.hub.content_store import ContentStore
from docex.hub.db import MIGRATIONS, Database, migrate
from docex.hub.tracking import document_detail

PREVIOUS_HEAD = "0002"  # docex/hub/migrations/versions at commit a509041
SCHEMAS = Path(__file__).parent / "previous_release"
ZFB, XXZX = "qingyuan.yangshan.zfb", "qingyuan.yangshan.xxzx"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ENVELOPE = b"DOCEX-ENVELOPE-OF-AN-EARLIER-RELEASE" * 10


@pytest.fixture(params=["sqlite", "postgresql"])
def previous_release(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at the previous release's schema: its URL."""
    schema = (SCHEMAS / f"a509041.{request.param}.sql").read_text("utf-8")
    if request.param == "sqlite":
        import sqlite3

        path = tmp_path / "hub.db"
        with sqlite3.connect(path) as conn:
            conn.executescript(schema)
            conn.execute("INSERT INTO alembic_version VALUES (?)", (PREVIOUS_HEAD,))
        conn.close()
        yield f"sqlite:///{path}"
        return
    import psycopg

    name = f"docex_upgrade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True) as conn:
            conn.execute(schema.encode())  # the whole dump, no parameters: one simple query
            conn.execute("INSERT INTO public.alembic_version VALUES (%s)", (PREVIOUS_HEAD,))
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _previous_release_data(url: str) -> None:
    """Rows as the previous release wrote them (plain SQL on its schema, not today's models)."""
    at = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        for address, name in ((XXZX, "阳山县信息中心"), (ZFB, "阳山县人民政府办公室")):
            conn.execute(text(
                "INSERT INTO units (address, name, kind, building, state, phase, sign_cert, enc_cert, broker_user, "
                "created_at) VALUES (:a, :n, 'government', '', 'enabled', 'electronic', '', '', :a, :t)"),
                {"a": address, "n": name, "t": at})
        conn.execute(text(
            "INSERT INTO documents (message_id, sender, title, doc_number, priority, classification, size, "
            "envelope_sha256, origin, created_at, accepted_at, deadline) VALUES ('m-old', :s, '旧版本的公文', "
            "'阳信发〔2026〕1号', '平急', '非密', :n, :h, '', :t, :t, :d)"),
            {"s": XXZX, "n": len(ENVELOPE), "h": hashlib.sha256(ENVELOPE).hexdigest(), "t": at,
             "d": at + dt.timedelta(hours=72)})
        conn.execute(text("INSERT INTO envelopes (message_id, data) VALUES ('m-old', :e)"), {"e": ENVELOPE})
        conn.execute(text(
            "INSERT INTO deliveries (message_id, recipient, route, state, code, reason, person, accepted_at, "
            "delivered_at, signed_for_at, reminders) VALUES ('m-old', :r, 'local', 'signed_for', '', '', '张三', "
            ":t, :t, :t, 0)"), {"r": ZFB, "t": at})
        prev = audit.GENESIS
        for i, action in enumerate(("unit.add", "document.accepted", "receipt.signed_for")):
            when = at + dt.timedelta(minutes=i)
            digest = audit.entry_hash(prev, when, "hub", action, "m-old", "{}")
            conn.execute(text("INSERT INTO audit (at, actor, action, subject, detail, prev_hash, hash) "
                              "VALUES (:t, 'hub', :a, 'm-old', '{}', :p, :h)"),
                         {"t": when, "a": action, "p": prev, "h": digest})
            prev = digest
        conn.execute(text("INSERT INTO settings (key, value) VALUES (:k, :v)"), {"k": audit.HEAD_KEY, "v": prev})
    engine.dispose()


def test_the_previous_release_upgrades_with_its_data(previous_release: str, tmp_path: Path) -> None:
    _previous_release_data(previous_release)
    migrate(previous_release)  # this release's head
    db = Database(previous_release)
    store = ContentStore(tmp_path / "content")
    try:
        with db.read() as s:
            detail = document_detail(s, "m-old")
            chain = audit.verify_chain(s)
            assert content_store.envelope_of(s, store, "m-old") == ENVELOPE  # read from the old table
        assert detail is not None and detail["recipients"][0]["state"] == "signed_for"
        assert detail["recipients"][0]["person"] == "张三"
        assert detail["accepted_at"] == "2026-11-30T16:00:00+08:00"
        assert chain.ok and chain.entries == 3
        assert content_store.adopt_legacy(db, store) == 1  # moved out of the database, as the hub's job does
        with db.read() as s:
            assert content_store.envelope_of(s, store, "m-old") == ENVELOPE
        with db.session() as s:  # and the upgraded store takes new work
            audit.append(s, "information-centre", "unit.phase", ZFB, phase="pilot")
        with db.read() as s:
            assert audit.verify_chain(s).ok
    finally:
        db.dispose()


def _columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        found = inspect(engine)
        return {table: {c["name"] for c in found.get_columns(table)} for table in found.get_table_names()}
    finally:
        engine.dispose()


def test_todays_old_migrations_still_make_the_previous_release_schema(tmp_path: Path) -> None:
    """Migrations 0001-0002 must not be edited: they are what upgraded hubs ran."""
    frozen = tmp_path / "frozen.db"
    import sqlite3

    with sqlite3.connect(frozen) as conn:
        conn.executescript((SCHEMAS / "a509041.sqlite.sql").read_text("utf-8"))
    conn.close()
    today = f"sqlite:///{tmp_path / 'today.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", today)
    command.upgrade(cfg, PREVIOUS_HEAD)
    assert _columns(today) == _columns(f"sqlite:///{frozen}")
