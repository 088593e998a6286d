"""Recall (撤销) on a real network: the sender recalls a document with a reason; the hub
records it (signed, audited) and tells every recipient; their agents take it out of the
inbox; a recipient that had signed for it keeps it and the sender is told who; a second
recall is harmless; a recall by another unit is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from docex.agent.actions import sign_for
from docex.agent.recall import recall_document
from docex.agent.store import Outgoing, Recall, SentEvent
from docex.hub.models import Receipt
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.notice import verify_notice
from docex.protocols.recall import make_recall
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, wait_until

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:
    net = network(5)
    net.start_hub()
    net.start_agents(per_process=5)
    yield net


def test_recall_takes_it_out_of_inboxes_and_signed_recipients_keep_it(county: Network) -> None:
    a, b, c = county.addresses[1:4]
    mid, _ = county.send(SENDER, [a, b], [c], doc_number="阳信发〔2011〕31号")
    county.wait_hub(mid, "delivered", [a, b, c])
    sign_for(county.agent(a), mid)
    wait_until(lambda: county.sent(SENDER, mid)[a].state == "signed_for", 60, "a's signed_for at the sender")

    assert recall_document(county.agent(SENDER), mid, "发文有误，请勿办理") is True
    assert recall_document(county.agent(SENDER), mid, "again") is False  # idempotent

    wait_until(lambda: county.hub_states(mid) == {a: "signed_for", b: "recalled", c: "recalled"}, 60,
               "recalled at the hub")
    for address in (b, c):
        doc = wait_until(lambda address=address: (r := county.received(address, mid)) is not None
                         and r.state == "recalled" and r, 60, f"recalled at {address}")
        assert doc.reason == "发文有误，请勿办理"
        assert not (county.home(address) / "inbox" / mid).exists()
        assert (county.home(address) / "recalled" / mid).is_dir()
    kept = county.received(a, mid)
    assert kept is not None and kept.state == "signed_for"
    assert (county.home(a) / "inbox" / mid).is_dir()
    wait_until(lambda: _recall_row(county, a, mid) == "kept", 60, "a records the recall as kept")

    # The sender is told who kept it (a signed notice) and sees the others recalled.
    wait_until(lambda: county.sent(SENDER, mid)[b].state == "recalled", 60, "recalled in the sender's view")
    rows = county.sent(SENDER, mid)
    assert rows[a].state == "signed_for" and rows[c].state == "recalled"
    notice = county.wait_notice(SENDER, mid, "recalled")
    assert verify_notice(notice.der, county.agent(SENDER).trust).recipients == (a,)
    assert county.sent_state(SENDER, mid) == "recalled"
    with county.agent(SENDER).store.session() as s:
        events = {(e.recipient, e.event) for e in s.execute(select(SentEvent).where(SentEvent.message_id == mid)).scalars()}
    assert {(a, "signed_for"), (b, "recalled"), (c, "recalled")} <= events

    # The hub keeps the sender's signed recall once, and audits it.
    assert county.count(Receipt, Receipt.message_id == mid, Receipt.event == "recalled") == 1
    assert [e.action for e in county.audit(mid, "document.recall")] == ["document.recall"]

    # Sign-for after the recall is refused at the terminal.
    with pytest.raises(DocexError) as err:
        sign_for(county.agent(b), mid)
    assert err.value.code == "recalled"


def _recall_row(county: Network, address: str, mid: str) -> str | None:
    with county.agent(address).store.session() as s:
        row = s.execute(select(Recall).where(Recall.message_id == mid, Recall.direction == "in")).scalar_one_or_none()
        return row.outcome if row is not None else None


def test_a_recall_by_another_unit_is_refused(county: Network) -> None:
    a, b = county.addresses[1:3]
    mid, _ = county.send(SENDER, [a])
    county.wait_hub(mid, "delivered", [a])
    # b signs a recall of SENDER's document with its own seal: the statement names b as
    # the sender, so the hub finds that b did not send it.
    ctx = county.agent(b)
    _, der = make_recall(message_id=mid, sender=b, reason="不是我发的", cert=ctx.creds.sign_cert, key=ctx.creds.sign_key)
    with ctx.store.session() as s:
        s.add(Outgoing(kind=messages.RECALL, message_id=f"{mid}|recall", body=der))
    wait_until(lambda: county.rejections(mid, "sender_mismatch"), 60, "the forged recall refused")
    assert county.hub_states(mid) == {a: "delivered"}
    received = county.received(a, mid)
    assert received is not None and received.state == "delivered"


def test_recall_of_a_document_everyone_signed_for_is_refused_at_the_terminal(county: Network) -> None:
    a = county.addresses[1]
    mid, _ = county.send(SENDER, [a])
    county.wait_hub(mid, "delivered", [a])
    sign_for(county.agent(a), mid)
    wait_until(lambda: county.sent(SENDER, mid)[a].state == "signed_for", 60, "signed_for at the sender")
    with pytest.raises(DocexError) as err:
        recall_document(county.agent(SENDER), mid, "晚了")
    assert err.value.code == "already_done"


def test_a_recall_of_an_unknown_document_is_refused_after_a_few_tries(county: Network) -> None:
    """It may have overtaken its document between hub workers, so it is retried first."""
    ctx = county.agent(SENDER)
    mid = "0b0e7e2a-5c1d-4f3e-9a7b-000000000001"
    _, der = make_recall(message_id=mid, sender=SENDER, reason="无此公文", cert=ctx.creds.sign_cert,
                         key=ctx.creds.sign_key)
    with ctx.store.session() as s:
        s.add(Outgoing(kind=messages.RECALL, message_id=f"{mid}|recall", body=der))
    wait_until(lambda: county.rejections(mid, "unknown_document"), 60, "the recall refused as unknown_document")
    assert len(county.rejections(mid)) == 1
