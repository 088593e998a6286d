"""The hub's clocks, one sweep at a time: undelivered documents expire (and the sender is
told), overdue ones are reminded once per deadline period (recipient and sender), and the
county's rollout plan moves units from pilot to dual track to electronic only."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select

from docex.broker import PublishItem
from docex.hub import states
from docex.hub.context import HubContext
from docex.hub.jobs import HubJobs, Rollout
from docex.hub.models import AuditEntry, Delivery, Document, Outbox, Unit, utcnow
from docex.protocols import messages
from docex.protocols.notice import verify_notice
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"

OLD, NEW, LATE = (f"0a0a0a0a-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))  # message ids are UUIDs


class Recorder:
    """An in-memory stand-in for the hub's confirmed publisher."""

    is_open = True

    def __init__(self) -> None:
        self.items: list[PublishItem] = []

    def publish_many(self, items: list[PublishItem], **_: Any) -> int:
        self.items.extend(items)
        return len(items)


def _jobs(ctx: HubContext, rollout: Rollout | None = None) -> tuple[HubJobs, Recorder]:
    jobs = HubJobs(ctx, rollout=rollout)
    recorder = Recorder()
    jobs._publisher = recorder  # type: ignore[assignment]
    return jobs, recorder


def _document(ctx: HubContext, message_id: str, accepted_hours_ago: float, deadline_hours: float,
              recipients: dict[str, str]) -> None:
    accepted = utcnow() - dt.timedelta(hours=accepted_hours_ago)
    with ctx.db.session() as s:
        s.add(Document(message_id=message_id, sender=XXZX, title="防汛通知", doc_number="阳府办明电〔2011〕12号",
                       priority="特急", envelope_sha256="0" * 64, created_at=accepted, accepted_at=accepted,
                       deadline=accepted + dt.timedelta(hours=deadline_hours)))
        s.flush()
        for address, state in recipients.items():
            s.add(Delivery(message_id=message_id, recipient=address, state=state, accepted_at=accepted))


def test_undelivered_documents_expire_and_the_sender_is_told_once(keyed_ctx: HubContext) -> None:
    week = keyed_ctx.config.limits.expire_hours
    _document(keyed_ctx, OLD, week + 1, 4, {ZFB: states.ROUTED, FGJ: states.DELIVERED})
    _document(keyed_ctx, NEW, 1, 4, {ZFB: states.ROUTED})
    jobs, sent = _jobs(keyed_ctx)
    assert jobs.sweep_expired() == 1
    assert jobs.sweep_expired() == 0
    with keyed_ctx.db.read() as s:
        rows = {(d.message_id, d.recipient): d for d in s.execute(select(Delivery)).scalars()}
        audited = s.execute(select(AuditEntry.action).where(AuditEntry.subject == OLD)).scalars().all()
        unpublished = s.execute(select(Outbox).where(Outbox.published_at.is_(None))).scalars().all()
    assert rows[(OLD, ZFB)].state == states.EXPIRED and rows[(OLD, ZFB)].closed_at is not None
    assert rows[(OLD, FGJ)].state == states.DELIVERED and rows[(NEW, ZFB)].state == states.ROUTED
    assert audited == ["delivery.expired"] and unpublished == []
    [item] = sent.items
    assert (item.routing_key, item.type) == (XXZX, messages.NOTICE)
    notice = verify_notice(item.body, keyed_ctx.identity.trust)
    assert (notice.event, notice.message_id, notice.recipients) == ("expired", OLD, (ZFB,))


def test_overdue_recipients_are_reminded_once_per_period(keyed_ctx: HubContext) -> None:
    _document(keyed_ctx, LATE, 6, 4, {ZFB: states.DELIVERED, FGJ: states.SIGNED_FOR})
    jobs, sent = _jobs(keyed_ctx)
    assert jobs.sweep_deadlines() == 2  # the recipient, and the sender (escalation)
    assert jobs.sweep_deadlines() == 0  # the next reminder is due a period later
    assert sorted(i.routing_key for i in sent.items) == [XXZX, ZFB]
    by_address = {i.routing_key: verify_notice(i.body, keyed_ctx.identity.trust) for i in sent.items}
    to_recipient, to_sender = by_address[ZFB], by_address[XXZX]
    assert to_recipient.event == "reminder" and to_recipient.code == "overdue" and "请尽快签收" in to_recipient.message
    # the sender hears who has not signed, not "please sign for it"
    assert to_sender.event == "reminder" and "请尽快签收" not in to_sender.message
    assert f"收文单位 {ZFB} 未在签收时限" in to_sender.message and to_sender.recipients == (ZFB,)
    with keyed_ctx.db.read() as s:
        reminders = {d.recipient: d.reminders for d in s.execute(select(Delivery)).scalars()}
    assert reminders == {ZFB: 1, FGJ: 0}


def test_the_rollout_plan_moves_units_through_its_phases(keyed_ctx: HubContext) -> None:
    with keyed_ctx.db.session() as s:
        s.add_all([Unit(address=XXZX, name="信息中心", building="admin_building", phase="electronic"),
                   Unit(address=ZFB, name="县府办", building="admin_building", phase="electronic"),
                   Unit(address=FGJ, name="发改局", building="", phase="electronic")])
    plan = Rollout(pilot_start=dt.date(2011, 8, 25), dual_track_start=dt.date(2011, 9, 16),
                   electronic_start=dt.date(2011, 10, 1))
    jobs, _ = _jobs(keyed_ctx, plan)

    def phases() -> dict[str, str]:
        with keyed_ctx.db.read() as s:
            return {u.address: u.phase for u in s.execute(select(Unit)).scalars()}

    assert jobs.apply_rollout(dt.date(2011, 8, 20)) == 0
    assert jobs.apply_rollout(dt.date(2011, 8, 25)) == 2
    assert phases() == {XXZX: "pilot", ZFB: "pilot", FGJ: "electronic"}
    jobs.apply_rollout(dt.date(2011, 9, 20))
    assert set(phases().values()) == {"dual_track"}
    jobs.apply_rollout(dt.date(2011, 10, 1))
    assert set(phases().values()) == {"electronic"}
    assert jobs.apply_rollout(dt.date(2011, 10, 2)) == 0


def test_the_seal_archive_is_renewed_when_due(keyed_ctx: HubContext, pki: Pki) -> None:
    """[hub] seal_archive: a sealed PDF whose newest timestamp expires within the margin
    gets a fresh archive timestamp from the hub's TSA; one not due is left alone."""
    import dataclasses

    from fpdf import FPDF

    from docex.pki.seal import apply_seal, verify_seals
    from docex.pki.seal_image import draw_seal
    from docex.pki.tsa import TimeStampAuthority

    config = keyed_ctx.config
    pki.county.issue_tsa("阳山县信息中心时间戳服务", config.home / "tsa", None)
    doc = FPDF(format="A4", unit="mm")
    doc.add_page()
    doc.set_font("Helvetica", size=14)
    doc.text(30, 40, "archived")
    unit = pki.creds(XXZX)
    sealed = apply_seal(bytes(doc.output()), cert=unit.sign_cert, key=unit.sign_key, image_png=draw_seal("阳山县信息中心"),
                        chain=[pki.county.certificate], crls=[pki.county.crl()],
                        timestamper=TimeStampAuthority.load(config.home / "tsa", None).timestamper(), page=1, at=(150, 200))
    archive = config.home / "archive" / "2011"
    archive.mkdir(parents=True)
    (archive / "阳府〔2011〕12号.pdf").write_bytes(sealed)
    from docex.hub.config import KeyConfig

    keyed_ctx.config = dataclasses.replace(config, seal_archive="archive", keys=KeyConfig(insecure_no_passphrase=True))
    jobs, _ = _jobs(keyed_ctx)
    assert jobs.renew_seal_archive() == []  # the TSA certificate has years left: not due
    assert jobs.renew_seal_archive(margin_days=3650) == ["2011/阳府〔2011〕12号.pdf"]
    renewed = (archive / "阳府〔2011〕12号.pdf").read_bytes()
    assert renewed.startswith(sealed) and len(renewed) > len(sealed)
    report = verify_seals(renewed, [pki.county.certificate], expected_address=XXZX, long_term=True)
    assert report.ok and [s.kind for s in report.signatures].count("document_timestamp") == 2
    with keyed_ctx.db.session() as s:
        actions = s.execute(select(AuditEntry.action, AuditEntry.subject)).all()
    assert ("seal.renewed", "2011/阳府〔2011〕12号.pdf") in [tuple(a) for a in actions]


def test_the_evidence_archive_keeps_closed_documents_and_renews_them_when_due(
        keyed_ctx: HubContext, pki: Pki, tmp_path_factory: Any) -> None:
    """[hub] evidence_archive: a document's bundle is written once every delivery is final
    (not before; never twice, even when the sweep's mark is lost; a delivery that closed
    before the mark but committed late is still found); years later, on a
    controlled clock, the job renews each bundle whose archive timestamp is about to expire
    with the CRL of that day and the hub's new TSA (not with one that expires as soon), and
    the renewed bundle verifies after the first TSA certificate expired."""
    import dataclasses
    import hashlib
    import shutil

    from docex.hub import audit
    from docex.hub import evidence as hub_evidence
    from docex.hub.config import KeyConfig
    from docex.hub.models import Envelope
    from docex.pki.timestamps import local_stamper
    from docex.pki.tsa import TimeStampAuthority
    from docex.protocols import bundle, envelope, localtime
    from docex.protocols.manifest import Manifest

    config = keyed_ctx.config
    shutil.copytree(pki.county.directory, config.ca_dir)  # the hub's own CA: it issues the CRL of renewal day
    keyed_ctx.config = dataclasses.replace(config, evidence_archive="evidence",
                                           keys=KeyConfig(insecure_no_passphrase=True))
    first_tsa = tmp_path_factory.mktemp("first-tsa")
    pki.county.issue_tsa("阳山县信息中心时间戳服务", first_tsa, None)  # five years
    keyed_ctx.stamper = local_stamper(TimeStampAuthority.load(first_tsa, None, clock=localtime.utcnow))
    sender = pki.creds(XXZX)

    def document(mid: str, state: str, closed: dt.datetime | None = None) -> None:
        env, _ = envelope.pack_layers(Manifest(message_id=mid, sender=XXZX, recipients=(ZFB,), title="防汛通知",
                                               doc_number="阳府办明电〔2011〕12号"), {"a.txt": b"x"}, sender,
                                      [pki.creds(ZFB).enc_cert])
        digest = hashlib.sha256(env).hexdigest()
        now = utcnow()
        with keyed_ctx.db.session() as s:
            s.add(Document(message_id=mid, sender=XXZX, title="防汛通知", doc_number="阳府办明电〔2011〕12号",
                           envelope_sha256=digest, created_at=now, accepted_at=now))
            s.flush()
            s.add(Envelope(message_id=mid, data=env))
            s.add(Delivery(message_id=mid, recipient=ZFB, state=state, accepted_at=now,
                           closed_at=(closed or now) if state in states.FINAL else None))
            audit.append(s, XXZX, "document.accept", mid, digest=digest)
            hub_evidence.issue(keyed_ctx, s, message_id=mid, event="accepted", envelope_sha256=digest)

    document(OLD, states.SIGNED_FOR)
    document(NEW, states.DELIVERED)
    jobs, _ = _jobs(keyed_ctx)
    root = config.home / "evidence"
    assert jobs.archive_evidence() == [OLD]  # NEW is still open
    assert jobs.archive_evidence() == []
    (root / ".archived-until").unlink()  # as if the hub died before moving its mark
    assert jobs.archive_evidence() == []  # the bundle is there: not written again
    [written] = root.rglob("*.zip")
    assert written.name == f"{OLD}.zip" and written.parent.parent.parent == root
    anchors = [pki.county.certificate]
    assert bundle.verify(written.read_bytes(), anchors).status == "VALID"
    with keyed_ctx.db.session() as s:
        s.execute(select(Delivery).where(Delivery.message_id == NEW)).scalar_one().state = states.RETURNED
        s.execute(select(Delivery).where(Delivery.message_id == NEW)).scalar_one().closed_at = utcnow()
    assert jobs.archive_evidence() == [NEW]
    # A delivery closed before the mark but committed after the sweep moved it (a slow
    # transaction, a worker whose clock is behind) is still found, a page at a time.
    from docex.hub import evidence_archive

    document(LATE, states.EXPIRED, closed=utcnow() - dt.timedelta(minutes=10))
    assert evidence_archive.sweep(keyed_ctx, root, keyed_ctx.stamper, batch=1).written == [LATE]
    assert jobs.renew_evidence_archive() == []  # the first TSA certificate has years left

    # Four years and nine months on: the first TSA certificate expires within the margin.
    start = utcnow()
    later = start + dt.timedelta(days=365 * 5 - 90)
    localtime.set_clock(lambda: later)
    try:
        shutil.copytree(first_tsa, config.home / "tsa")  # a hub TSA that expires as soon renews nothing
        assert jobs.renew_evidence_archive() == []
        shutil.rmtree(config.home / "tsa")
        pki.county.issue_tsa("阳山县信息中心时间戳服务（二）", config.home / "tsa", None, validity_days=365 * 8)
        assert jobs.renew_evidence_archive() == []  # issued, but the hub still stamps with the old one
        keyed_ctx.stamper = local_stamper(TimeStampAuthority.load(config.home / "tsa", None, clock=localtime.utcnow))
        renewed = jobs.renew_evidence_archive()
        assert len(renewed) == 3 and all(n.endswith(".zip") for n in renewed)
        assert jobs.renew_evidence_archive() == []  # renewed: not due again
    finally:
        localtime.set_clock(None)
    after_expiry = start + dt.timedelta(days=365 * 5 + 30)
    for path in root.rglob("*.zip"):
        report = bundle.verify(path.read_bytes(), anchors, at=after_expiry)
        assert report.ok and report.status == "VALID", report.problems
        assert len(report.archive["timestamps"]) == 2
    with keyed_ctx.db.read() as s:
        actions = [a for (a,) in s.execute(select(AuditEntry.action).where(AuditEntry.action.like("evidence.%")))]
    assert actions.count("evidence.archived") == 3 and actions.count("evidence.renewed") == 3
    assert actions.count("evidence.renew_blocked") == 2
    # On demand, from the command line (the hub's home as it stands).
    from tests.cli.runner import run

    keyed_ctx.config.save()
    result = run("evidence", "archive", "--home", str(config.home), OLD, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["present"] == [OLD], result.output
    result = run("evidence", "archive", "--home", str(config.home), OLD, "--replace", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["written"] == [OLD], result.output
    assert len(bundle.read_files(next(root.rglob(f"{OLD}.zip")).read_bytes())) > 0
    result = run("evidence", "archive", "--home", str(config.home), "not-an-id")
    assert result.exit_code == 2 and "UUID" in result.output
