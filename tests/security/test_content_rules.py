"""Issue 10, medium: classification was matched exactly (`机密★5年`, `秘密 `, `绝密` with a
zero-width space and `SECRET` passed) and only the main PDF's seal was checked. Markings are
now normalised and held against an allow-list, by the sender, the hub and the recipient;
every PDF of a package has its seals checked."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from docex.agent.config import SealConfig
from docex.agent.context import AgentContext
from docex.agent.receiving import Receiver
from docex.agent.sealing import seal_pdf
from docex.agent.sending import Draft, queue_document
from docex.agent.store import Quarantined, Received
from docex.pki.errors import PkiError
from docex.protocols.manifest import Manifest, new_message_id
from tests.agent.homes import County, build_county
from tests.conftest import Pki
from tests.samples import one_line_pdf
from tests.security.hostile import envelope_with_id

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
CLASSIFIED = ["机密★5年", "秘密 ", " 秘密", "绝密\u200b", "机\u200d密", "\ufeff秘密", "SECRET", "secret", "Top Secret",
              "ＳＥＣＲＥＴ", "秘\u3000密", "confidential", "机密★", "★绝密", "x" * 200]
OPEN = ["", "无", "非密", "公开", "内部", " 内部 ", "内部\u200b"]


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("content"))


def _manifest(classification: str) -> Manifest:
    return Manifest(message_id=new_message_id(), sender=XXZX, recipients=(ZFB,), title="测试", doc_number="1号",
                    classification=classification)


@pytest.mark.parametrize("marking", CLASSIFIED)
def test_classified_markings_are_refused_however_spelt(marking: str) -> None:
    with pytest.raises(PkiError) as exc:
        _manifest(marking).validate()
    assert exc.value.code == "classified"


@pytest.mark.parametrize("marking", OPEN)
def test_open_markings_pass(marking: str) -> None:
    _manifest(marking).validate()


def test_the_sender_and_the_recipient_refuse_a_classified_document(county: County) -> None:
    sender = county.context(XXZX)
    with pytest.raises(PkiError) as exc:
        queue_document(sender, Draft(to=(ZFB,), title="t", doc_number="n", files={"a.txt": b"a"},
                                     classification="绝密\u200b"))
    assert exc.value.code == "classified"
    # Past a hub that would let it through (an older one, or another network's): the recipient
    # validates the manifest itself.
    me = county.context(ZFB)
    mid = new_message_id()
    Receiver(me).document(envelope_with_id(sender.creds, me, mid, classification="机密★5年"))
    with me.store.session() as s:
        row = s.execute(select(Quarantined).where(Quarantined.message_id == mid)).scalar_one()
        assert s.get(Received, mid) is None
    assert row.code == "classified"


def _unsealed_sender(county: County) -> AgentContext:
    sender = county.context(XXZX)
    plain = AgentContext(replace(sender.config, seal=SealConfig(auto=False)), sender.creds, sender.store)
    plain.load_directories()
    return plain


@pytest.mark.parametrize("name", ["附件2.pdf", "附件2.bin"])
def test_every_pdf_of_the_package_has_its_seals_checked(county: County, name: str) -> None:
    """The main PDF is honest; an attachment (named .pdf, or a PDF by content) carries
    another unit's seal: the document is quarantined."""
    foreign = seal_pdf(county.context(FGJ), one_line_pdf("forged attachment"))
    sender = _unsealed_sender(county)
    files = {"正文.pdf": seal_pdf(county.context(XXZX), one_line_pdf("genuine")), name: foreign}
    mid = queue_document(sender, Draft(to=(ZFB,), title="附件印章", doc_number="阳测〔2011〕5号", files=files))
    from tests.agent.homes import outgoing

    me = county.context(ZFB)
    Receiver(me).document(outgoing(sender, mid).body)
    with me.store.session() as s:
        row = s.execute(select(Quarantined).where(Quarantined.message_id == mid)).scalar_one()
        assert s.get(Received, mid) is None
    assert row.code == "seal_address_mismatch"


def test_a_package_of_honest_seals_is_received_as_sealed(county: County) -> None:
    sender = _unsealed_sender(county)
    files = {"正文.pdf": one_line_pdf("unsealed main"), "附件.pdf": seal_pdf(county.context(XXZX), one_line_pdf("sealed"))}
    mid = queue_document(sender, Draft(to=(ZFB,), title="附件盖章", doc_number="阳测〔2011〕6号", files=files))
    from tests.agent.homes import outgoing

    me = county.context(ZFB)
    Receiver(me).document(outgoing(sender, mid).body)
    with me.store.session() as s:
        received = s.get(Received, mid)
    assert received is not None and received.seal_status == "valid"


def test_a_refusal_notice_never_undoes_a_delivered_document(county: County) -> None:
    """The agent's own guard (the hub's: test_exchange_findings.py): a `rejected` notice
    moves only copies the hub has not taken yet."""
    from docex.agent.store import SentRecipient

    sender = county.context(XXZX)
    mid = queue_document(sender, Draft(to=(ZFB, FGJ), title="t", doc_number="n", files={"a.txt": b"a"}))
    with sender.store.session() as s:
        row = s.execute(select(SentRecipient).where(SentRecipient.message_id == mid,
                                                    SentRecipient.recipient == ZFB)).scalar_one()
        row.state = "delivered"
    Receiver(sender).notice(county.notice(mid, "rejected", "signature_invalid"))
    with sender.store.session() as s:
        states = {r.recipient: (r.state, r.code) for r in
                  s.execute(select(SentRecipient).where(SentRecipient.message_id == mid)).scalars()}
    assert states == {ZFB: ("delivered", ""), FGJ: ("rejected", "signature_invalid")}
