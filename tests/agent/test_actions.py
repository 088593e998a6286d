"""Signing for (签收) and returning (退回) a received document: each leaves one signed
receipt in the outbox, by the unit or by the staff member who did it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from docex.agent.actions import return_document, sign_for
from docex.agent.context import AgentContext
from docex.agent.receiving import Receiver
from docex.agent.sending import Draft, queue_document
from docex.agent.store import Outgoing, Received
from docex.pki.names import common_name
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.receipt import verify_receipt
from tests.agent.homes import County, build_county, outgoing
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("county"))


def _received(county: County, address: str = ZFB) -> tuple[AgentContext, str]:
    sender = county.context(XXZX)
    mid = queue_document(sender, Draft(to=(address,), title="会议通知", doc_number="阳信发〔2011〕8号",
                                       files={"通知.txt": "定于周一开会。".encode()}))
    me = county.context(address)
    Receiver(me).document(outgoing(sender, mid).body)
    return me, mid


def test_sign_for_leaves_a_signed_receipt_once(county: County) -> None:
    me, mid = _received(county)
    sign_for(me, mid)
    receipt, signer = verify_receipt(outgoing(me, messages.receipt_key(mid, ZFB, "signed_for")).body, me.trust)
    assert (receipt.event, receipt.recipient, receipt.person) == ("signed_for", ZFB, "")
    with me.store.session() as s:
        row = s.get(Received, mid)
    assert row is not None and row.state == "signed_for"
    with pytest.raises(DocexError) as again:
        sign_for(me, mid)
    assert again.value.code == "already_done"
    with pytest.raises(DocexError) as after:
        return_document(me, mid, "太晚了")
    assert after.value.code == "already_done"


def test_return_needs_a_reason_and_carries_it(county: County) -> None:
    me, mid = _received(county)
    with pytest.raises(DocexError) as empty:
        return_document(me, mid, "   ")
    assert empty.value.code == "receipt_invalid"
    return_document(me, mid, "请补充附件后重新发送")
    receipt, _ = verify_receipt(outgoing(me, messages.receipt_key(mid, ZFB, "returned")).body, me.trust)
    assert receipt.event == "returned" and receipt.reason == "请补充附件后重新发送"
    with me.store.session() as s:
        row = s.get(Received, mid)
    assert row is not None and (row.state, row.reason) == ("returned", "请补充附件后重新发送")


def test_a_staff_member_signs_with_their_own_certificate(county: County, pki: Pki) -> None:
    me, mid = _received(county)
    person = pki.person(ZFB, "李秘书")
    folder = pki.root / "people" / f"{ZFB}-李秘书"
    sign_for(me, mid, person_dir=folder)
    receipt, signer = verify_receipt(outgoing(me, messages.receipt_key(mid, ZFB, "signed_for")).body, me.trust)
    assert receipt.person == "李秘书" and common_name(signer) == common_name(person.cert)


def test_someone_of_another_unit_cannot_sign_for_us(county: County, pki: Pki) -> None:
    me, mid = _received(county)
    pki.person(FGJ, "王科员")
    with pytest.raises(DocexError) as exc:
        sign_for(me, mid, person_dir=pki.root / "people" / f"{FGJ}-王科员")
    assert exc.value.code == "sender_mismatch"
    with me.store.session() as s:
        assert s.execute(select(Outgoing).where(Outgoing.message_id.like(f"{mid}|%|signed_for"))).first() is None


def test_an_unknown_document_is_a_named_error(county: County) -> None:
    with pytest.raises(DocexError) as exc:
        sign_for(county.context(ZFB), "00000000-0000-4000-8000-000000000000")
    assert exc.value.code == "unknown_document"
