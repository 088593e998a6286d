"""Receiving, driven with real envelopes and the agent's own handler (no broker): a
document is verified, written, recorded and receipted once however often it comes; what
cannot be opened is quarantined with a named error and a signed `refused` receipt; the
sender's view follows receipts and the hub's notices; a directory is accepted only from
our own hub."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pika
import pytest
from sqlalchemy import func, select

from docex.agent.context import AgentContext
from docex.agent.receiving import Receiver
from docex.agent.sending import Draft, queue_document, release_held
from docex.agent.status import agent_status
from docex.agent.store import (
    AwaitingTrust,
    EvidenceRow,
    Notice,
    Outgoing,
    Quarantined,
    Received,
    Sent,
    SentEvent,
    SentRecipient,
)
from docex.broker import Delivery
from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificate, load_private_key
from docex.protocols import envelope, messages
from docex.protocols.directory import (
    DirectoryDelta,
    DirectorySnapshot,
    UnitEntry,
    cert_pem,
    sign_delta,
    sign_directory,
)
from docex.protocols.manifest import Manifest, new_message_id, utcnow_iso
from docex.protocols.receipt import make_receipt, verify_receipt
from tests.agent.homes import PREFIX, UNITS, County, build_county, outgoing
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
FILES = {"正文.txt": "请各单位认真贯彻落实。".encode(), "附件.bin": os.urandom(1024)}


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("county"))


def _send(county: County, to: tuple[str, ...] = (ZFB,)) -> tuple[AgentContext, str, bytes]:
    sender = county.context(XXZX)
    mid = queue_document(sender, Draft(to=to, title="测试通知", doc_number="阳信发〔2011〕3号", files=FILES))
    return sender, mid, outgoing(sender, mid).body


def _count(ctx: AgentContext, model: type, *where: object) -> int:
    with ctx.store.session() as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_a_document_is_written_recorded_and_receipted_once(county: County) -> None:
    _, mid, body = _send(county)
    me = county.context(ZFB)
    receiver = Receiver(me)
    receiver.document(body)
    receiver.document(body)  # a redelivery

    folder = me.config.inbox / mid
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "manifest.json"} == FILES
    assert json.loads((folder / "manifest.json").read_text("utf-8"))["message_id"] == mid
    with me.store.session() as s:
        received = s.get(Received, mid)
    assert received is not None and received.sender == XXZX and received.sender_name == "阳山县信息中心"
    assert received.state == "delivered" and received.seal_status == "none"
    key = messages.receipt_key(mid, ZFB, "delivered")
    assert _count(me, Outgoing, Outgoing.message_id == key) == 1
    receipt, signer = verify_receipt(outgoing(me, key).body, me.trust)
    assert (receipt.event, receipt.recipient, receipt.message_id) == ("delivered", ZFB, mid)
    assert [p.name for p in me.config.inbox.iterdir() if p.name.startswith(".")] == []


def test_the_dispatcher_routes_by_amqp_type(county: County) -> None:
    _, mid, body = _send(county)
    me = county.context(ZFB)
    Receiver(me)(Delivery(body=body, message_id=mid, headers={}, user_id=None, redelivered=False, delivery_tag=1,
                          properties=pika.BasicProperties(type=messages.DOCUMENT)))
    assert _count(me, Received, Received.message_id == mid) == 1
    Receiver(me)(Delivery(body=b"?", message_id="x", headers={}, user_id=None, redelivered=False, delivery_tag=2,
                          properties=pika.BasicProperties(type="mystery")))  # logged and dropped, no crash


def test_what_a_peer_chose_reaches_the_log_as_one_line(county: County, caplog: pytest.LogCaptureFixture) -> None:
    me = county.context(ZFB)
    with caplog.at_level("INFO", logger="docex.agent"):
        Receiver(me)(Delivery(body=b"?", message_id="x", headers={}, user_id=None, redelivered=False, delivery_tag=3,
                              properties=pika.BasicProperties(type="mystery\nERROR forged line\x1b[2J" + "y" * 500)))
        Receiver(me).document(b"\x30\x82not an envelope\nERROR forged")
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("\n" not in line and "\x1b" not in line and len(line) < 800 for line in lines), lines


@pytest.mark.parametrize("damage", ["flip", "not_ours", "garbage"])
def test_what_cannot_be_opened_is_quarantined_and_reported(county: County, damage: str) -> None:
    _, mid, body = _send(county, to=(FGJ,) if damage == "not_ours" else (ZFB,))
    if damage == "flip":
        broken = bytearray(body)
        broken[len(body) // 2] ^= 0x01
        body = bytes(broken)
    elif damage == "garbage":
        body = b"\x30\x82not an envelope at all"
    me = county.context(ZFB)
    before = _count(me, Quarantined)
    Receiver(me).document(body)
    Receiver(me).document(body)  # the same bytes again: kept once

    assert _count(me, Quarantined) == before + 1
    with me.store.session() as s:
        row = s.execute(select(Quarantined).order_by(Quarantined.id.desc())).scalars().first()
        refused = s.execute(select(Outgoing).where(Outgoing.message_id.like(f"{mid}|{ZFB}|refused-%"))).scalars().all()
    assert row is not None and Path(row.path).read_bytes() == body
    assert _count(me, Received, Received.message_id == mid) == 0
    expected = {"flip": "signature_invalid", "not_ours": "not_a_recipient", "garbage": "malformed_envelope"}[damage]
    assert row.code == expected
    if damage == "garbage":
        assert refused == [] and row.message_id == ""  # nobody to report it to: kept, not answered
    else:
        assert len(refused) == 1
        receipt, _ = verify_receipt(refused[0].body, me.trust)
        assert (receipt.event, receipt.error, receipt.message_id) == ("refused", expected, mid)


def test_receipts_move_the_senders_view_forward_only(county: County) -> None:
    sender, mid, body = _send(county, to=(ZFB, FGJ))
    zfb, fgj = county.context(ZFB), county.context(FGJ)
    receiver = Receiver(sender)

    def receipt(ctx: AgentContext, event: str, reason: str = "") -> bytes:
        _, der = make_receipt(message_id=mid, recipient=ctx.creds.address, event=event, envelope_sha256="0" * 64,
                              cert=ctx.creds.sign_cert, key=ctx.creds.sign_key, reason=reason)
        return der

    receiver.receipt(receipt(zfb, "signed_for"))
    receiver.receipt(receipt(zfb, "delivered"))  # late: does not move it back
    receiver.receipt(receipt(fgj, "returned", "请补充附件"))
    receiver.receipt(b"not a receipt")  # ignored, no crash
    with sender.store.session() as s:
        rows = {r.recipient: r for r in s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
    assert rows[ZFB].state == "signed_for" and rows[ZFB].receipt is not None
    assert rows[FGJ].state == "returned" and rows[FGJ].reason == "请补充附件"


def test_receipts_taken_as_a_batch_end_as_one_by_one(county: County) -> None:
    """The consumer's batch: every receipt kept once and its delivery moved, in one
    transaction; a duplicate and a forgery in the batch change nothing; other messages of
    the batch are handled on their own."""
    sender, mid, body = _send(county, to=(ZFB, FGJ))
    zfb, fgj = county.context(ZFB), county.context(FGJ)

    def receipt(ctx: AgentContext, event: str, reason: str = "") -> bytes:
        _, der = make_receipt(message_id=mid, recipient=ctx.creds.address, event=event, envelope_sha256="0" * 64,
                              cert=ctx.creds.sign_cert, key=ctx.creds.sign_key, reason=reason)
        return der

    def delivery(der: bytes, kind: str = messages.RECEIPT) -> Delivery:
        return Delivery(body=der, message_id="x", headers={}, user_id=None, redelivered=False, delivery_tag=1,
                        properties=pika.BasicProperties(type=kind))

    delivered, signed = receipt(zfb, "delivered"), receipt(zfb, "signed_for")
    Receiver(sender).batch([delivery(delivered), delivery(signed), delivery(delivered),
                            delivery(receipt(fgj, "returned", "请补充附件")), delivery(b"not a receipt"),
                            delivery(b"\x30\x00", "mystery")])
    with sender.store.session() as s:
        rows = {r.recipient: r for r in s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
        events = sorted((e.recipient, e.event) for e in s.execute(select(SentEvent).where(SentEvent.message_id == mid))
                        .scalars())
        kept = s.execute(select(func.count()).select_from(EvidenceRow).where(EvidenceRow.message_id == mid,
                                                                             EvidenceRow.direction == "received")).scalar_one()
    assert rows[ZFB].state == "signed_for" and rows[ZFB].receipt == signed
    assert rows[FGJ].state == "returned" and rows[FGJ].reason == "请补充附件"
    assert events == [(FGJ, "returned"), (ZFB, "delivered"), (ZFB, "signed_for")]
    assert kept == 3  # the duplicate is the same evidence


def test_notices_are_kept_and_a_refusal_marks_the_document(county: County) -> None:
    sender = county.context(XXZX)
    mid = queue_document(sender, Draft(to=(ZFB, "guangdong.swb"), title="测试通知", doc_number="阳信发〔2011〕3号",
                                       files=FILES))  # held: guangdong.swb is in no directory we hold
    receiver = Receiver(sender)
    receiver.notice(county.notice(mid, "paper_route", "paper_route", ("guangdong.swb",)))
    assert release_held(sender) == 1
    receiver.notice(county.notice(mid, "rejected", "too_large"))
    with sender.store.session() as s:
        rows = {r.recipient: r for r in s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
        sent = s.get(Sent, mid)
        kept = s.execute(select(Notice).where(Notice.message_id == mid)).scalars().all()
    assert rows["guangdong.swb"].state == "paper_route"
    assert rows[ZFB].state == "rejected" and rows[ZFB].code == "too_large"
    assert sent is not None and sent.state == "rejected"
    assert sorted(n.code for n in kept) == ["paper_route", "too_large"]


def test_notices_taken_as_a_batch_end_as_one_by_one(county: County) -> None:
    sender = county.context(XXZX)
    mid = queue_document(sender, Draft(to=(ZFB, FGJ), title="测试通知", doc_number="阳信发〔2011〕4号", files=FILES))
    paper, expired = (county.notice(mid, "paper_route", "paper_route", (ZFB,)),
                      county.notice(mid, "expired", "expired", (FGJ,)))

    def delivery(der: bytes) -> Delivery:
        return Delivery(body=der, message_id="x", headers={}, user_id=None, redelivered=False, delivery_tag=1,
                        properties=pika.BasicProperties(type=messages.NOTICE))

    Receiver(sender).batch([delivery(paper), delivery(expired), delivery(paper), delivery(b"not a notice")])
    with sender.store.session() as s:
        rows = {r.recipient: r for r in s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
        kept = s.execute(select(Notice).where(Notice.message_id == mid)).scalars().all()
    assert rows[ZFB].state == "paper_route" and rows[FGJ].state == "expired"
    assert sorted(n.code for n in kept) == ["expired", "paper_route"]  # the duplicate kept once


def test_a_refused_replay_does_not_undo_the_accepted_document(county: County) -> None:
    sender, mid, _ = _send(county)
    receiver = Receiver(sender)
    with sender.store.session() as s:
        row = s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalar_one()
        row.state = "delivered"
    der = county.notice(mid, "rejected", "duplicate")
    receiver.notice(der)
    receiver.notice(der)  # redelivered: kept once
    with sender.store.session() as s:
        row = s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalar_one()
        sent = s.get(Sent, mid)
        kept = s.execute(select(Notice).where(Notice.message_id == mid)).scalars().all()
    assert row.state == "delivered" and sent is not None and sent.state == "queued"
    assert [n.code for n in kept] == ["duplicate"]


def test_a_squatted_id_sends_the_document_again_under_a_new_id_once(county: County) -> None:
    """Another unit held our id first: the hub's `duplicate` notice names the recipients our
    document did not reach; they get the same signed content under a fresh id, once."""
    sender = county.context(XXZX)
    mid = queue_document(sender, Draft(to=(ZFB,), cc=(FGJ,), title="被抢占编号的通知", doc_number="阳信发〔2011〕8号",
                                       files=FILES))
    der = county.notice(mid, "rejected", "duplicate", (ZFB, FGJ))
    receiver = Receiver(sender)
    receiver.notice(der)
    receiver.notice(der)  # redelivered: nothing sent twice
    with sender.store.session() as s:
        rows = {r.recipient: r for r in s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
        events = s.execute(select(SentEvent).where(SentEvent.message_id == mid, SentEvent.event == "resent")).scalars().all()
        sent = s.get(Sent, mid)
    assert {r.state for r in rows.values()} == {"rejected"} and {r.code for r in rows.values()} == {"duplicate"}
    assert sent is not None and sent.state == "duplicate"
    assert sorted(e.recipient for e in events) == [FGJ, ZFB] and len({e.reason for e in events}) == 1
    new_id = events[0].reason
    assert new_id != mid and all(new_id in r.reason for r in rows.values())
    with sender.store.session() as s:
        again = s.get(Sent, new_id)
        queued = {r.recipient: r.state for r in s.execute(
            select(SentRecipient).where(SentRecipient.message_id == new_id)).scalars()}
        assert s.execute(select(func.count()).select_from(Sent)
                         .where(Sent.title == "被抢占编号的通知")).scalar_one() == 2  # no third copy
    assert again is not None and again.title == "被抢占编号的通知" and queued == {ZFB: "queued", FGJ: "queued"}
    opened = envelope.open_envelope(outgoing(sender, new_id).body, county.context(ZFB).creds, county.context(ZFB).trust)
    assert opened.manifest.message_id == new_id and opened.header.sender == XXZX
    assert (opened.manifest.recipients, opened.manifest.cc) == ((ZFB,), (FGJ,))
    assert opened.manifest.doc_number == "阳信发〔2011〕8号" and opened.files == FILES


def test_a_squatted_id_sends_again_only_the_copies_that_did_not_go(county: County) -> None:
    """Squatted beyond a link: the notice names only the copies refused there; the ones
    already delivered are not sent twice, and a copy-only remainder becomes 主送."""
    sender = county.context(XXZX)
    mid = queue_document(sender, Draft(to=(ZFB,), cc=(FGJ,), title="测试通知", doc_number="阳信发〔2011〕9号", files=FILES))
    with sender.store.session() as s:
        row = s.execute(select(SentRecipient).where(SentRecipient.message_id == mid,
                                                    SentRecipient.recipient == ZFB)).scalar_one()
        row.state = "delivered"
    Receiver(sender).notice(county.notice(mid, "rejected", "duplicate", (ZFB, FGJ)))
    with sender.store.session() as s:
        states = {r.recipient: r.state for r in s.execute(
            select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
        new_id = s.execute(select(SentEvent.reason).where(SentEvent.message_id == mid,
                                                          SentEvent.event == "resent")).scalar_one()
    assert states == {ZFB: "delivered", FGJ: "rejected"}
    opened = envelope.open_envelope(outgoing(sender, new_id).body, county.context(FGJ).creds, county.context(FGJ).trust)
    assert (opened.manifest.recipients, opened.manifest.cc) == ((FGJ,), ())


def test_a_notice_not_signed_by_a_hub_is_ignored(county: County) -> None:
    sender, mid, _ = _send(county)
    unit = county.context(ZFB).creds
    _, by_a_unit = make_receipt(message_id=mid, recipient=ZFB, event="delivered", envelope_sha256="0" * 64,
                                cert=unit.sign_cert, key=unit.sign_key)
    Receiver(sender).notice(by_a_unit)
    Receiver(sender).notice(b"garbage")
    assert _count(sender, Notice, Notice.message_id == mid) == 0


def test_a_newer_directory_from_our_hub_is_taken_and_an_older_one_ignored(county: County) -> None:
    me = county.context(ZFB)
    version = me.directory_version()
    extra = UnitEntry(address=f"{PREFIX}.xin", name="新单位", enc_cert=(county.homes[FGJ] / "enc.crt").read_text())
    Receiver(me).directory(county.snapshot(version=version + 5, extra=(extra,)))
    assert me.directory_version() == version + 5 and me.lookup(f"{PREFIX}.xin") is not None
    Receiver(me).directory(county.snapshot(version=version + 1))
    assert me.directory_version() == version + 5
    fresh = county.context(ZFB)  # it was stored for the next start
    assert fresh.directory_version() == version + 5


@pytest.mark.parametrize("ca", ["stranger", "city"])
def test_a_directory_signed_by_another_hub_is_refused(county: County, pki: Pki, tmp_path: Path, ca: str) -> None:
    """Neither a CA we do not trust nor one we trust for units (the city's) may speak for our hub."""
    authority = pki.stranger if ca == "stranger" else pki.city
    authority.issue_server("冒充的交换中心", tmp_path, None, hub_prefix=PREFIX)
    fake = DirectorySnapshot(prefix=PREFIX, version=10_000, generated_at=utcnow_iso(),
                             units=(UnitEntry(address=f"{PREFIX}.jiamao", name="假冒单位"),))
    der = sign_directory(fake, load_certificate(tmp_path / "server.crt"), load_private_key(tmp_path / "server.key", None))
    me = county.context(ZFB)
    with pytest.raises(PkiError) as exc:
        me.accept_directory(der)
    assert exc.value.code in ("directory_untrusted", "certificate_untrusted")
    Receiver(me).directory(der)  # the service logs and drops it
    assert me.lookup(f"{PREFIX}.jiamao") is None and me.directory_version() < 10_000


# -- directory deltas ---------------------------------------------------------------------------
def _delta(county: County, base: int, version: int, units: tuple[UnitEntry, ...] = (),
           removed: tuple[str, ...] = ()) -> bytes:
    hub_cert = load_certificate(county.hub_dir / "server.crt")
    delta = DirectoryDelta(prefix=PREFIX, base_version=base, version=version, generated_at=utcnow_iso(), units=units,
                           removed=removed, hub_cert=cert_pem(hub_cert),
                           crls=((county.pki.county.directory / "crl.pem").read_text(),))
    return sign_delta(delta, hub_cert, county.hub_key())


@pytest.fixture
def own(pki: Pki, tmp_path: Path) -> County:
    """A county of its own: these tests change ZFB's directory."""
    return build_county(pki, tmp_path / "county", {ZFB: UNITS[ZFB], FGJ: UNITS[FGJ]})


def _whole_requests(ctx: AgentContext) -> list[str]:
    with ctx.store.session() as s:
        return list(s.execute(select(Outgoing.message_id).where(
            Outgoing.message_id.like(f"{messages.DIRECTORY_REQUEST}|whole|%"))).scalars())


def test_directory_deltas_apply_in_order_and_are_kept_for_the_next_start(own: County) -> None:
    me = own.context(ZFB)
    v = me.directory_version()
    xin = UnitEntry(address=f"{PREFIX}.xin", name="新单位", enc_cert=(own.homes[FGJ] / "enc.crt").read_text())
    Receiver(me)(Delivery(body=_delta(own, v, v + 1, units=(xin,)), message_id="d1", headers={}, user_id=None,
                          redelivered=False, delivery_tag=1, properties=pika.BasicProperties(type="directory_delta")))
    assert me.directory_version() == v + 1 and me.lookup(f"{PREFIX}.xin") == xin
    renamed = dataclasses.replace(xin, name="新单位（更名）")
    Receiver(me).directory_delta(_delta(own, v + 1, v + 3, units=(renamed,), removed=(FGJ,)))
    assert me.directory_version() == v + 3 and me.lookup(f"{PREFIX}.xin") == renamed and me.lookup(FGJ) is None
    Receiver(me).directory_delta(_delta(own, v, v + 1, units=(xin,)))  # again, late: nothing moves back
    assert me.directory_version() == v + 3 and me.lookup(f"{PREFIX}.xin") == renamed
    assert _whole_requests(me) == []
    fresh = own.context(ZFB)  # directory.der and the deltas on top of it
    assert fresh.directory_version() == v + 3 and fresh.lookup(f"{PREFIX}.xin") == renamed and fresh.lookup(FGJ) is None


def test_a_missed_delta_asks_for_the_whole_snapshot_and_the_early_one_waits(own: County) -> None:
    me = own.context(ZFB)
    v = me.directory_version()
    xin = UnitEntry(address=f"{PREFIX}.xin", name="新单位")
    Receiver(me).directory_delta(_delta(own, v + 1, v + 2, units=(xin,)))  # v -> v+1 not here (yet)
    assert me.directory_version() == v and me.lookup(f"{PREFIX}.xin") is None
    assert _whole_requests(me) == [f"{messages.DIRECTORY_REQUEST}|whole|{v}"]
    Receiver(me).directory_delta(_delta(own, v + 1, v + 2, units=(xin,)))  # asked once per version held
    assert len(_whole_requests(me)) == 1
    Receiver(me).directory_delta(_delta(own, v, v + 1))  # the missing one: both apply, in order
    assert me.directory_version() == v + 2 and me.lookup(f"{PREFIX}.xin") == xin
    # The whole snapshot the agent asked for arrives: it is the new base, the deltas under it go.
    Receiver(me).directory(own.snapshot(version=v + 2))  # the version the deltas reached: a new base
    assert list((me.config.home / "directory-deltas").glob("*.der")) == []
    assert own.context(ZFB).directory_version() == v + 2
    Receiver(me).directory(own.snapshot(version=v + 4))
    assert me.directory_version() == v + 4 and list((me.config.home / "directory-deltas").glob("*.der")) == []


@pytest.mark.parametrize("ca", ["stranger", "city"])
def test_a_delta_not_signed_by_our_hub_is_refused(own: County, pki: Pki, tmp_path: Path, ca: str) -> None:
    authority = pki.stranger if ca == "stranger" else pki.city
    authority.issue_server("冒充的交换中心", tmp_path, None, hub_prefix=PREFIX)
    me = own.context(ZFB)
    v = me.directory_version()
    fake = DirectoryDelta(prefix=PREFIX, base_version=v, version=v + 1, generated_at=utcnow_iso(),
                          units=(UnitEntry(address=f"{PREFIX}.jiamao", name="假冒单位"),))
    der = sign_delta(fake, load_certificate(tmp_path / "server.crt"), load_private_key(tmp_path / "server.key", None))
    with pytest.raises(PkiError) as exc:
        me.accept_delta(der)
    assert exc.value.code in ("directory_untrusted", "certificate_untrusted")
    Receiver(me).directory_delta(der)  # the service logs and drops it
    Receiver(me).directory_delta(b"garbage")
    assert me.lookup(f"{PREFIX}.jiamao") is None and me.directory_version() == v
    assert list((me.config.home / "directory-deltas").glob("*.der")) == []  # nothing kept


# -- a signer whose CA reaches us later --------------------------------------------------------
SWB = "qingyuan.swb"


@dataclass
class Later:
    county: County
    me: AgentContext
    ca: CertificateAuthority  # trusted by our hub, not yet by this agent
    body: bytes
    message_id: str


def _letter(sender: UnitCredentials, to: AgentContext, doc_number: str) -> tuple[str, bytes]:
    manifest = Manifest(message_id=new_message_id(), sender=sender.address, recipients=(to.creds.address,),
                        title="关于联网后公文交换的通知", doc_number=doc_number)
    return manifest.message_id, envelope.pack(manifest, FILES, sender, [to.creds.enc_cert])


@pytest.fixture(scope="module")
def city_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, UnitCredentials]:
    root = tmp_path_factory.mktemp("later-city")
    ca = CertificateAuthority.init(root / "ca", "清远市电子公文交换中心", None)
    ca.issue_unit(SWB, "中共清远市委办公室", root / "swb", None)
    return ca, UnitCredentials.load(root / "swb", None)


@pytest.fixture
def later(pki: Pki, tmp_path: Path, city_ca: tuple[CertificateAuthority, UnitCredentials]) -> Later:
    """ZFB's agent, and a document to it from a city unit under a CA that ZFB's snapshot
    does not carry yet (as when its hub was linked to the city a moment ago)."""
    county = build_county(pki, tmp_path / "county", {ZFB: UNITS[ZFB]})
    me = county.context(ZFB)
    mid, body = _letter(city_ca[1], me, "清办发〔2011〕9号")
    return Later(county, me, city_ca[0], body, mid)


def _waiting(ctx: AgentContext) -> list[str]:
    with ctx.store.session() as s:
        return list(s.execute(select(AwaitingTrust.message_id)).scalars())


def test_a_document_under_a_ca_not_trusted_yet_waits_and_is_delivered_once_trust_arrives(later: Later, pki: Pki) -> None:
    me, mid = later.me, later.message_id
    receiver = Receiver(me)
    receiver.document(later.body)
    receiver.document(later.body)  # a redelivery while it waits: kept once
    assert _waiting(me) == [mid]
    assert agent_status(me)().inbox_awaiting_trust == 1  # docex_inbox_awaiting_trust
    assert _count(me, Received) == 0 and _count(me, Quarantined) == 0
    assert _count(me, Outgoing, Outgoing.message_id.like(f"{mid}|%")) == 0  # no receipt of any kind yet
    # The hub is asked for its current directory (which carries the CA it routed the document under).
    asked = _count(me, Outgoing, Outgoing.kind == messages.DIRECTORY_REQUEST)
    assert asked == 1
    # Another document flows meanwhile.
    other, other_body = _letter(pki.creds("qingyuan.yangshan.jyj"), me, "阳教发〔2011〕2号")
    receiver.document(other_body)
    assert _count(me, Received, Received.message_id == other) == 1
    assert receiver.retry_waiting() == 1  # the first look of a run tries everything once
    assert receiver.retry_waiting() == 0  # nothing changed, nothing is due: nothing is tried
    assert _waiting(me) == [mid]

    # The trust arrives with our hub's next snapshot: the document is delivered at once.
    receiver.directory(later.county.snapshot(version=later.county.version + 1, anchors=(later.ca,)))
    assert _waiting(me) == [] and _count(me, Quarantined) == 0
    assert agent_status(me)().inbox_awaiting_trust == 0
    with me.store.session() as s:
        received = s.get(Received, mid)
    assert received is not None and received.sender == SWB and received.doc_number == "清办发〔2011〕9号"
    folder = me.config.inbox / mid
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "manifest.json"} == FILES
    receipt, _ = verify_receipt(outgoing(me, messages.receipt_key(mid, ZFB, "delivered")).body, me.trust)
    assert (receipt.event, receipt.message_id) == ("delivered", mid)
    receiver.document(later.body)  # redelivered afterwards: already there
    assert _count(me, Received, Received.message_id == mid) == 1 and _waiting(me) == []


def test_a_ca_that_never_becomes_trusted_ends_in_quarantine_after_the_wait(later: Later) -> None:
    me, mid = later.me, later.message_id
    wait = dt.timedelta(minutes=me.config.trust_wait_minutes)
    came = dt.datetime(2011, 6, 1, 9, 0, tzinfo=dt.UTC)
    receiver = Receiver(me)
    receiver.document(later.body, now=came)
    receiver.retry_waiting(now=came + wait - dt.timedelta(seconds=1))
    assert _waiting(me) == [mid] and _count(me, Quarantined) == 0
    assert receiver.retry_waiting(now=came + wait) == 1  # its time is over
    assert _waiting(me) == []
    with me.store.session() as s:
        row = s.execute(select(Quarantined).where(Quarantined.message_id == mid)).scalar_one()
        refused = s.execute(select(Outgoing).where(Outgoing.message_id.like(f"{mid}|{ZFB}|refused-%"))).scalars().all()
    assert row.code == "certificate_untrusted" and Path(row.path).read_bytes() == later.body
    assert len(refused) == 1
    receipt, _ = verify_receipt(refused[0].body, me.trust)
    assert (receipt.event, receipt.error, receipt.message_id) == ("refused", "certificate_untrusted", mid)
    receiver.document(later.body, now=came + 2 * wait)  # the same bytes again: quarantined once, not waiting again
    assert _count(me, Quarantined, Quarantined.message_id == mid) == 1 and _waiting(me) == []
    assert _count(me, Received, Received.message_id == mid) == 0


def test_with_no_wait_configured_an_untrusted_ca_is_quarantined_at_once(later: Later) -> None:
    me = later.me
    replace(me.config, trust_wait_minutes=0).save()
    me = AgentContext.open(me.config.home)
    Receiver(me).document(later.body)
    assert _waiting(me) == []
    assert [q.code for q in _quarantined(me)] == ["certificate_untrusted"]


def test_a_pdf_seal_under_a_foreign_ca_is_quarantined_at_once(later: Later, pki: Pki,
                                                               city_ca: tuple[CertificateAuthority, UnitCredentials]) -> None:
    """Only the envelope's signer under a CA we may learn waits: a sound envelope from a
    unit we trust, carrying a PDF sealed under a CA we do not, is refused at once."""
    from fpdf import FPDF

    from docex.pki.seal import apply_seal
    from docex.pki.seal_image import draw_seal

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=14)
    pdf.cell(text="sealed elsewhere")
    city_ca_cert, swb = city_ca[0].certificate, city_ca[1]
    sealed = apply_seal(bytes(pdf.output()), cert=swb.sign_cert, key=swb.sign_key, image_png=draw_seal(swb.name),
                        chain=[city_ca_cert], lta=False)
    me, sender = later.me, pki.creds("qingyuan.yangshan.jyj")
    manifest = Manifest(message_id=new_message_id(), sender=sender.address, recipients=(ZFB,),
                        title="转发市委办公室通知", doc_number="阳教发〔2011〕5号")
    body = envelope.pack(manifest, {"正文.pdf": sealed}, sender, [me.creds.enc_cert])
    Receiver(me).document(body)
    assert _waiting(me) == []
    assert [(q.message_id, q.code) for q in _quarantined(me)] == [(manifest.message_id, "certificate_untrusted")]


def _quarantined(ctx: AgentContext) -> list[Quarantined]:
    with ctx.store.session() as s:
        return list(s.execute(select(Quarantined)).scalars())
