"""Seals end to end through the agents' own code: a unit configured to seal sends a PDF,
the recipient verifies the seal on receipt; a changed or foreign seal is quarantined and
reported, never silently accepted. The hub's TSA stamps the seals; the hub registers and
distributes a unit's seal impression."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from fpdf import FPDF
from sqlalchemy import select

from docex.agent.config import SealConfig
from docex.agent.context import AgentContext
from docex.agent.receiving import Receiver
from docex.agent.sealing import seal_pdf
from docex.agent.sending import Draft, queue_document
from docex.agent.store import Outgoing, Quarantined, Received
from docex.cli.localnet import LocalNetwork
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.hub.models import Outbox
from docex.hub.seals import register_seal
from docex.hub.units import CsvUnit
from docex.pki.seal import verify_seals
from docex.pki.seal_image import draw_seal
from docex.pki.tsa import TimeStampAuthority, serve
from docex.protocols import messages

pytestmark = pytest.mark.rabbitmq

SENDER, RECIPIENT, OTHER = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"


def _pdf(text: str = "docex") -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=14)
    pdf.cell(text=text)
    return bytes(pdf.output())


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("sealnet")
    units = [CsvUnit(a, n, "government", "", "") for a, n in
             ((SENDER, "阳山县信息中心"), (RECIPIENT, "阳山县人民政府办公室"), (OTHER, "阳山县发展和改革局"))]
    network = LocalNetwork.create(root, "qingyuan.yangshan", units, tag=f"t{uuid.uuid4().hex[:6]}")
    tsa = serve(TimeStampAuthority.load(network.hub_home / "tsa", None), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{tsa.server_port}/"
    for home in network.agents.values():  # the units seal and stamp with the hub's TSA
        text = (home / "docex.toml").read_text()
        text = text.replace("auto = false", "auto = true").replace('tsa_url = "', f'tsa_url = "{url}" #')
        (home / "docex.toml").write_text(text)
    yield network
    tsa.shutdown()
    network.destroy()


def _ctx(net: LocalNetwork, address: str) -> AgentContext:
    return AgentContext.open(net.agents[address])


def _envelope(ctx: AgentContext, message_id: str) -> bytes:
    with ctx.store.session() as s:
        return s.execute(select(Outgoing.body).where(Outgoing.message_id == message_id)).scalar_one()


def test_sealed_pdf_verifies_on_receipt(net: LocalNetwork) -> None:
    sender, recipient = _ctx(net, SENDER), _ctx(net, RECIPIENT)
    message_id = queue_document(sender, Draft(to=(RECIPIENT,), title="盖章测试", doc_number="阳信发〔2011〕7号",
                                              files={"正文.pdf": _pdf()}))
    Receiver(recipient).document(_envelope(sender, message_id))
    with recipient.store.session() as s:
        received = s.get(Received, message_id)
    assert received is not None and received.seal_status == "valid"
    sealed = (Path(received.path) / "正文.pdf").read_bytes()
    report = verify_seals(sealed, recipient.trust.anchors, list(recipient.trust.crls), SENDER, require_crl=False)
    assert report.ok, report.message
    assert report.seals[0].address == SENDER and report.seals[0].time_source == "tsa"


def test_a_pdf_the_unit_sealed_already_is_not_sealed_twice(net: LocalNetwork) -> None:
    """The desk lays out and seals 正文.pdf before the preview (POST /api/compose with
    `seal`); sending it from a unit that seals every outgoing PDF keeps that one seal."""
    sender, recipient = _ctx(net, SENDER), _ctx(net, RECIPIENT)
    sealed = seal_pdf(sender, _pdf("desk"))
    message_id = queue_document(sender, Draft(to=(RECIPIENT,), title="已盖章", doc_number="阳信发〔2011〕8号",
                                              files={"正文.pdf": sealed}))
    Receiver(recipient).document(_envelope(sender, message_id))
    with recipient.store.session() as s:
        received = s.get(Received, message_id)
    assert received is not None and received.seal_status == "valid"
    got = (Path(received.path) / "正文.pdf").read_bytes()
    assert got == sealed
    report = verify_seals(got, recipient.trust.anchors, list(recipient.trust.crls), SENDER, require_crl=False)
    assert report.ok and len(report.seals) == 1


def _send_raw(net: LocalNetwork, pdf: bytes) -> tuple[AgentContext, str]:
    """Send `pdf` as is (no sealing at source) and deliver it to the recipient's code."""
    sender, recipient = _ctx(net, SENDER), _ctx(net, RECIPIENT)
    plain = AgentContext(replace(sender.config, seal=SealConfig(auto=False)), sender.creds, sender.store)
    plain.load_directories()
    message_id = queue_document(plain, Draft(to=(RECIPIENT,), title="坏印章", doc_number="测试", files={"正文.pdf": pdf}))
    Receiver(recipient).document(_envelope(sender, message_id))
    return recipient, message_id


def _quarantined(ctx: AgentContext, message_id: str) -> Quarantined:
    with ctx.store.session() as s:
        assert s.get(Received, message_id) is None
        row = s.execute(select(Quarantined).where(Quarantined.message_id == message_id)).scalar_one()
        refused = s.execute(select(Outgoing).where(Outgoing.message_id.like(f"{message_id}|%|refused-%"))).scalar_one()
        assert refused.kind == messages.RECEIPT
        return row


def test_seal_changed_after_sealing_is_quarantined(net: LocalNetwork) -> None:
    sealed = seal_pdf(_ctx(net, SENDER), _pdf("original"))
    tampered = bytearray(sealed)
    # flip a byte inside the signed range, away from the signature's own contents
    position = len(sealed) // 4
    tampered[position] ^= 0x01
    recipient, message_id = _send_raw(net, bytes(tampered))
    row = _quarantined(recipient, message_id)
    assert row.code in ("seal_modified", "seal_invalid")


def test_foreign_seal_is_quarantined(net: LocalNetwork) -> None:
    by_other = seal_pdf(_ctx(net, OTHER), _pdf("not ours"))
    recipient, message_id = _send_raw(net, by_other)
    assert _quarantined(recipient, message_id).code == "seal_address_mismatch"


def test_registered_seal_reaches_the_unit(net: LocalNetwork) -> None:
    config = net.config
    db = Database(config.database_url)
    png = draw_seal("阳山县信息中心")
    register_seal(config, db, HubIdentity.load(config, None), SENDER, png)
    with db.read() as s:
        row = s.execute(select(Outbox).where(Outbox.kind == messages.SEAL, Outbox.recipient == SENDER)).scalars().first()
    assert row is not None and row.body is not None
    ctx = _ctx(net, SENDER)
    Receiver(ctx).seal(row.body)
    assert (ctx.config.home / "seal.png").read_bytes() == png
    db.dispose()
