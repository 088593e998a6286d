"""Upgrades: a tracking database at the previous release's schema (commit a509041, whose
newest migration is PREVIOUS_HEAD), holding documents, deliveries and an audit chain
written with that schema's own columns, upgrades to this release's head with nothing
lost: tracking reads it, the audit chain still verifies, and a backup of it restores."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from docex.hub import audit
from docex.hub.db import MIGRATIONS, Database, migrate
from docex.hub.tracking import document_detail

PREVIOUS_HEAD = "0002"  # docex/hub/migrations/versions at commit a509041
ZFB, XXZX = "qingyuan.yangshan.zfb", "qingyuan.yangshan.xxzx"


def _upgrade(url: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, revision)


def _previous_release_data(url: str) -> None:
    """Rows as the previous release wrote them (plain SQL on its schema, not today's models)."""
    at = dt.datetime(2026, 11, 30, 8, 0)
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
            "'阳信发〔2026〕1号', '平急', '非密', 10, :h, '', :t, :t, :d)"),
            {"s": XXZX, "h": "0" * 64, "t": at, "d": at + dt.timedelta(hours=72)})
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


def test_the_previous_release_upgrades_with_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    _upgrade(url, PREVIOUS_HEAD)
    _previous_release_data(url)
    migrate(url)  # this release's head
    db = Database(url)
    try:
        with db.read() as s:
            detail = document_detail(s, "m-old")
            chain = audit.verify_chain(s)
        assert detail is not None and detail["recipients"][0]["state"] == "signed_for"
        assert detail["accepted_at"] == "2026-11-30T16:00:00+08:00"
        assert chain.ok and chain.entries == 3
        with db.session() as s:  # and the upgraded store takes new work
            audit.append(s, "information-centre", "unit.phase", ZFB, phase="pilot")
        with db.read() as s:
            assert audit.verify_chain(s).ok
    finally:
        db.dispose()
