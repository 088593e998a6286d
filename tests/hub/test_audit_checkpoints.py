"""Audit checkpoints make the chain tamper-evident against anyone who can write the
database: each attack that leaves the hash chain itself "intact" (cutting the tail with
the stored head, recomputing after an edit, deleting in the middle and recomputing,
emptying the log) now fails `checkpoints.verify` with a named reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from docex.hub import audit, checkpoints
from docex.hub.config import HubConfig, KeyConfig
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.jobs import HubJobs
from docex.hub.models import AuditEntry, Link, Outbox, Setting
from docex.pki.errors import PkiError
from docex.pki.timestamps import Stamper, local_stamper, signature_timestamp
from docex.pki.trust import TrustStore
from docex.pki.tsa import TimeStampAuthority
from docex.protocols import messages
from docex.protocols.statement import sign_statement
from tests.conftest import Pki


@pytest.fixture(scope="module")
def stamper(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Stamper:
    folder = tmp_path_factory.mktemp("tsa")
    pki.county.issue_tsa("阳山县信息中心时间戳服务", folder, None)
    return local_stamper(TimeStampAuthority.load(folder, None))


def _fill(db: Database, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with db.session() as s:
            audit.append(s, "hub", "document.accept", f"m{i}", n=i)


def _checkpoint(ctx: HubContext, stamper: Stamper | None, reason: str = "test") -> checkpoints.Checkpoint:
    cp = checkpoints.make(ctx.config, ctx.db, ctx.identity.cert, ctx.identity.key, stamper, reason)
    assert cp is not None
    return cp


def _verify(ctx: HubContext, pki: Pki) -> tuple[audit.ChainReport, checkpoints.CheckpointReport]:
    with ctx.db.read() as s:
        chain = audit.verify_chain(s)
    return chain, checkpoints.verify(ctx.config, ctx.db, pki.trust())


def _codes(report: checkpoints.CheckpointReport) -> set[str]:
    return {p["code"] for p in report.problems}


def _recompute(db: Database) -> None:
    """What an attacker with write access does after changing the log: rehash it all."""
    with db.session() as s:
        prev = audit.GENESIS
        for row in s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars():
            row.prev_hash = prev
            row.hash = audit.entry_hash(prev, row.at, row.actor, row.action, row.subject, row.detail)
            prev = row.hash
        head = s.get(Setting, audit.HEAD_KEY)
        if head is not None:
            head.value = prev


def test_an_untouched_log_verifies_with_signed_timestamped_checkpoints(keyed_ctx: HubContext, pki: Pki,
                                                                       stamper: Stamper) -> None:
    _fill(keyed_ctx.db, 4)
    first = _checkpoint(keyed_ctx, stamper)
    _fill(keyed_ctx.db, 3, 4)
    second = _checkpoint(keyed_ctx, stamper)
    assert (first.seq, first.entries, second.seq, second.prev) == (1, 4, 2, checkpoints.payload_digest(first.payload()))
    files = sorted(checkpoints.checkpoint_dir(keyed_ctx.config).glob("*.p7s"))
    assert [f.name for f in files] == ["00000001.p7s", "00000002.p7s"]
    assert all(signature_timestamp(f.read_bytes()) is not None for f in files)
    chain, report = _verify(keyed_ctx, pki)
    assert chain.ok and report.ok, report.problems
    assert report.checkpoints == 2 and report.latest is not None and report.latest["entries"] == 8
    with keyed_ctx.db.read() as s:  # each checkpoint is itself in the chain
        assert s.execute(select(AuditEntry.subject).where(AuditEntry.action == "audit.checkpoint")).scalars().all() == ["1", "2"]


def test_cutting_the_tail_together_with_the_stored_head_fails(keyed_ctx: HubContext, pki: Pki, stamper: Stamper) -> None:
    _fill(keyed_ctx.db, 6)
    _checkpoint(keyed_ctx, stamper)
    with keyed_ctx.db.session() as s:
        ids = s.execute(select(AuditEntry.id).order_by(AuditEntry.id)).scalars().all()
        s.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids[-3:])))
        last = s.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).scalar_one()
        s.get(Setting, audit.HEAD_KEY).value = last.hash  # type: ignore[union-attr]
    chain, report = _verify(keyed_ctx, pki)
    assert chain.ok  # the chain alone sees nothing
    assert not report.ok and "entries_missing" in _codes(report)


def test_recomputing_the_chain_after_an_edit_fails(keyed_ctx: HubContext, pki: Pki, stamper: Stamper) -> None:
    _fill(keyed_ctx.db, 5)
    _checkpoint(keyed_ctx, stamper)
    with keyed_ctx.db.session() as s:
        row = s.execute(select(AuditEntry).order_by(AuditEntry.id).limit(1).offset(1)).scalar_one()
        row.detail = '{"n": 99, "sender": "intruder"}'
    _recompute(keyed_ctx.db)
    chain, report = _verify(keyed_ctx, pki)
    assert chain.ok
    assert not report.ok and "chain_rewritten" in _codes(report)


def test_deleting_in_the_middle_and_recomputing_fails(keyed_ctx: HubContext, pki: Pki, stamper: Stamper) -> None:
    _fill(keyed_ctx.db, 6)
    _checkpoint(keyed_ctx, stamper)
    with keyed_ctx.db.session() as s:
        ids = s.execute(select(AuditEntry.id).order_by(AuditEntry.id)).scalars().all()
        s.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids[2:4])))
    _recompute(keyed_ctx.db)
    chain, report = _verify(keyed_ctx, pki)
    assert chain.ok
    assert not report.ok and {"chain_rewritten", "entries_missing"} <= _codes(report)


def test_deleting_everything_fails(keyed_ctx: HubContext, pki: Pki, stamper: Stamper) -> None:
    _fill(keyed_ctx.db, 3)
    _checkpoint(keyed_ctx, stamper)
    with keyed_ctx.db.session() as s:
        s.execute(delete(AuditEntry))
        s.execute(delete(Setting).where(Setting.key.in_((audit.HEAD_KEY, checkpoints.SEQ_KEY))))
    chain, report = _verify(keyed_ctx, pki)
    assert chain.ok and chain.entries == 0
    assert not report.ok and {"entries_missing", "head_missing"} <= _codes(report)


def test_missing_or_forged_checkpoint_files_fail(keyed_ctx: HubContext, pki: Pki, stamper: Stamper) -> None:
    for i in range(3):
        _fill(keyed_ctx.db, 1, i)
        _checkpoint(keyed_ctx, stamper)
    folder = checkpoints.checkpoint_dir(keyed_ctx.config)
    newest = folder / "00000003.p7s"
    kept = newest.read_bytes()
    newest.unlink()  # the newest: the log still names it
    assert "checkpoint_missing" in _codes(checkpoints.verify(keyed_ctx.config, keyed_ctx.db, pki.trust()))
    newest.write_bytes(kept)
    middle = folder / "00000002.p7s"
    middle.rename(folder / "moved")  # one in the middle: a gap
    assert "checkpoint_missing" in _codes(checkpoints.verify(keyed_ctx.config, keyed_ctx.db, pki.trust()))
    (folder / "moved").rename(middle)
    assert checkpoints.verify(keyed_ctx.config, keyed_ctx.db, pki.trust()).ok
    # A checkpoint signed by a unit (not the hub) is refused.
    unit = pki.creds("qingyuan.yangshan.xxzx")
    forged = checkpoints.Checkpoint(keyed_ctx.config.prefix, 4, 1, 1, "0" * 64, "2026-01-01T00:00:00+00:00", "x", "")
    (folder / "00000004.p7s").write_bytes(sign_statement(checkpoints.KIND, forged.payload(), unit.sign_cert, unit.sign_key))
    assert "checkpoint_invalid" in _codes(checkpoints.verify(keyed_ctx.config, keyed_ctx.db, pki.trust()))


def test_an_operator_action_is_followed_by_a_checkpoint(keyed_ctx: HubContext, pki: Pki, tmp_path: Path) -> None:
    config = keyed_ctx.config.with_changes(keys=KeyConfig(insecure_no_passphrase=True))
    config.ca_dir.mkdir(exist_ok=True)
    shutil.copy(pki.county.directory / "ca.crt", config.ca_dir / "ca.crt")
    db = checkpoints.open_database(config)
    try:
        with db.session() as s:
            audit.append(s, "hub", "document.accept", "m1")
        assert not checkpoints.checkpoint_dir(config).exists()  # the hub's own traffic: the interval job's
        with db.session() as s:
            audit.append(s, "operator", "unit.disable", "qingyuan.yangshan.fgj")
        files = sorted(checkpoints.checkpoint_dir(config).glob("*.p7s"))
        assert [f.name for f in files] == ["00000001.p7s"]
        cp, _ = checkpoints.read_checkpoint(files[0].read_bytes(), pki.trust(), hub=config.prefix)
        assert cp.reason == "operator: unit.disable" and cp.entries == 2
    finally:
        db.dispose()


def test_the_interval_job_checkpoints_only_when_something_was_audited(keyed_ctx: HubContext, stamper: Stamper) -> None:
    keyed_ctx.stamper = stamper
    jobs = HubJobs(keyed_ctx)
    assert jobs.checkpoint_audit() is False  # an empty log
    _fill(keyed_ctx.db, 2)
    assert jobs.checkpoint_audit() is True
    assert jobs.checkpoint_audit() is False  # nothing since but the checkpoint's own entry


def test_a_checkpoint_goes_to_the_parent_which_keeps_a_verified_copy(keyed_ctx: HubContext, pki: Pki,
                                                                     stamper: Stamper, tmp_path: Path) -> None:
    with keyed_ctx.db.session() as s:
        s.add(Link(name="parent", prefix="", role="parent", state="active", broker_user="b"))
    _fill(keyed_ctx.db, 2)
    cp = _checkpoint(keyed_ctx, stamper)
    with keyed_ctx.db.read() as s:
        row = s.execute(select(Outbox).where(Outbox.kind == messages.CHECKPOINT)).scalar_one()
    assert row.routing_key == "link.parent" and row.message_id == f"checkpoint|{keyed_ctx.config.prefix}|1"
    city = HubConfig(home=tmp_path / "city", prefix="qingyuan", name="清远市", database_url="sqlite://",
                     broker=keyed_ctx.config.broker)
    kept, new = checkpoints.keep_remote(city, row.body or b"", pki.trust(), keyed_ctx.config.prefix)
    assert new and kept == cp
    assert checkpoints.keep_remote(city, row.body or b"", pki.trust(), keyed_ctx.config.prefix)[1] is False
    assert (tmp_path / "city" / "audit-checkpoints" / "remote" / keyed_ctx.config.prefix / "00000001.p7s").exists()
    with pytest.raises(PkiError):  # not the hub behind that link
        checkpoints.keep_remote(city, row.body or b"", TrustStore([pki.county.certificate]), "qingyuan.lianzhou")
