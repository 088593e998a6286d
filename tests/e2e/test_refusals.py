"""What the network refuses, on the real broker with running agents: RabbitMQ itself keeps
a unit to its own queue and its own name; the hub refuses replays, tampering, unknown and
disabled recipients, classified and oversize envelopes, each with its code, a Rejection
row, an audit entry, the refused bytes kept and a signed notice that reaches the sender;
a recipient quarantines what it cannot open, reports it, and acknowledges it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from sqlalchemy import select

from docex.agent.sending import Draft, queue_document
from docex.agent.store import Outgoing
from docex.broker.topology import DELIVER_EXCHANGE, INGRESS_EXCHANGE, INGRESS_ROUTING_KEY
from docex.hub.models import Document, Receipt
from docex.protocols import messages
from docex.protocols.errors import DocexError
from tests.cli.runner import run
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, document_files, knows_state, wait_until
from tests.protocols import forge

pytestmark = pytest.mark.rabbitmq

XWB, ZFB, JW = "qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb", "qingyuan.yangshan.jw"
LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:
    net = network(5, max_envelope_bytes=LIMIT)
    net.start_hub()
    net.start_agents(per_process=5)
    yield net


def assert_refused(net: Network, message_id: str, code: str, body: bytes, *, recorded: bool = True) -> None:
    """Refused at the hub with `code`: one Rejection row, an audit entry, the bytes kept,
    and the hub's signed notice at the sender (whose sent view shows the code)."""
    rejections = wait_until(lambda: net.rejections(message_id, code), 60, f"{code} for {message_id}")
    assert len(rejections) == 1 and rejections[0].sender == SENDER
    assert Path(rejections[0].kept_at).read_bytes() == body
    entries = net.audit(message_id, "document.reject")
    assert any(json.loads(e.detail)["code"] == code for e in entries)
    notice = net.wait_notice(SENDER, message_id, code)
    assert notice.event == "rejected" and notice.message
    if recorded:
        rows = net.wait_sent(SENDER, message_id, "rejected", net.sent(SENDER, message_id), timeout=30)
        assert {x.code for x in rows.values()} == {code}
        assert net.sent_state(SENDER, message_id) == "rejected"


def _outgoing_body(net: Network, address: str, key: str) -> bytes:
    with net.agent(address).store.session() as s:
        row = s.execute(select(Outgoing).where(Outgoing.message_id == key)).scalar_one()
        return row.body


def _published(net: Network, address: str) -> bool:
    """Nothing waits in the unit's outbox: every copy is in the hub's ingress, or past it."""
    with net.agent(address).store.session() as s:
        return s.execute(select(Outgoing.id).where(Outgoing.sent_at.is_(None))).first() is None


def test_a_unit_cannot_read_another_units_queue_or_publish_as_another(county: Network) -> None:
    other_user = county.unit_settings(XWB).user
    conn = county.unit_connection(ZFB)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as read:
            conn.channel().basic_get(f"unit.{XWB}")
        assert read.value.reply_code == 403 and "ACCESS_REFUSED" in read.value.reply_text

        channel = conn.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as forged:
            channel.basic_publish(INGRESS_EXCHANGE, INGRESS_ROUTING_KEY, b"x",
                                  pika.BasicProperties(user_id=other_user, message_id="forged", type=messages.DOCUMENT))
        assert forged.value.reply_code == 406 and "PRECONDITION_FAILED" in forged.value.reply_text

        channel = conn.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as bypass:
            channel.basic_publish(DELIVER_EXCHANGE, XWB, b"x", pika.BasicProperties(message_id="bypass"))
        assert bypass.value.reply_code == 403

        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as declare:
            conn.channel().queue_declare("unit.mine", durable=True)
        assert declare.value.reply_code == 403
    finally:
        if conn.is_open:
            conn.close()


def test_replay_is_refused_and_a_redelivery_of_the_same_bytes_is_harmless(county: Network) -> None:
    mid, _ = county.send(SENDER, [ZFB], doc_number="阳信发〔2011〕21号")
    county.wait_hub(mid, "delivered", [ZFB])
    original = _outgoing_body(county, SENDER, mid)
    _, other = county.pack(SENDER, [ZFB], message_id=mid)

    county.queue_raw(SENDER, mid, original, [ZFB], key=f"{mid}|again", record=False)
    county.queue_raw(SENDER, mid, other, [ZFB], key=f"{mid}|replay", record=False)

    assert_refused(county, mid, "duplicate", other, recorded=False)
    county.wait_empty("hub.ingress", 60, "the copies handled", before=lambda: _published(county, SENDER))
    assert len(county.rejections(mid)) == 1  # the same bytes again were not refused...
    assert [e.action for e in county.audit(mid) if e.action.startswith("document.")].count("document.accept") == 1
    assert county.count(Document, Document.message_id == mid) == 1  # ...nor accepted twice
    assert county.received_count(ZFB) >= 1 and county.received(ZFB, mid) is not None
    assert county.count(Receipt, Receipt.message_id == mid) == 1
    # The refused replay does not undo what the hub accepted under that id.
    county.wait_sent(SENDER, mid, "delivered", [ZFB])


def test_a_flipped_byte_is_refused_as_signature_invalid(county: Network) -> None:
    mid, body = county.pack(SENDER, [ZFB])
    tampered = bytearray(body)
    tampered[len(body) // 2] ^= 0x01
    county.queue_raw(SENDER, mid, bytes(tampered), [ZFB])
    assert_refused(county, mid, "signature_invalid", bytes(tampered))
    assert county.hub_states(mid) == {} and county.received(ZFB, mid) is None


def test_unknown_recipient_refuses_the_whole_document(county: Network) -> None:
    nobody = "qingyuan.yangshan.nosuch"
    mid, body = county.pack(SENDER, [ZFB, nobody], off_network=[nobody])
    county.queue_raw(SENDER, mid, body, [ZFB, nobody])
    assert_refused(county, mid, "unknown_recipient", body)
    assert county.hub_states(mid) == {}


def test_classified_document_is_refused(county: Network) -> None:
    files = document_files("涉密")
    m = forge.manifest(SENDER, [ZFB], files, classification="秘密")
    body = forge.wrap(forge.package(m, files), m, county.agent(SENDER).creds, [county.enc_cert(ZFB)])
    county.queue_raw(SENDER, m.message_id, body, [ZFB])
    assert_refused(county, m.message_id, "classified", body)
    # and the agent refuses at source, before anything is queued
    draft = Draft(to=(ZFB,), title="涉密文件", doc_number="阳密〔2011〕1号", files=files, classification="秘密")
    with pytest.raises(DocexError) as exc:
        queue_document(county.agent(SENDER), draft)
    assert exc.value.code == "classified"


def test_oversize_envelope_is_refused(county: Network) -> None:
    mid, _ = county.send(SENDER, [ZFB], files={"大附件.bin": os.urandom(LIMIT + 1024)})
    body = _outgoing_body(county, SENDER, mid)
    assert len(body) > LIMIT
    assert_refused(county, mid, "too_large", body)


def test_envelope_signed_by_another_unit_is_a_sender_mismatch(county: Network) -> None:
    mid, body = county.pack(XWB, [ZFB])  # XWB's keys, published by SENDER's login
    county.queue_raw(SENDER, mid, body, [ZFB])
    assert_refused(county, mid, "sender_mismatch", body)


def test_disabled_recipient_is_refused_and_cannot_connect_until_enabled(county: Network) -> None:
    assert run("unit", "disable", "--home", county.hub_home, JW).exit_code == 0
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        county.unit_connection(JW).close()
    with county.management() as mgmt:
        wait_until(lambda: not [c for c in mgmt.list_connections(county.config.broker.vhost)
                                if c.user == county.unit_settings(JW).user], 30, "JW's connections closed")

    mid, body = county.pack(SENDER, [JW])
    county.queue_raw(SENDER, mid, body, [JW])
    assert_refused(county, mid, "recipient_disabled", body)
    # Once the directory tells the sender's terminal, it refuses at source.
    wait_until(lambda: knows_state(county.home(SENDER), JW) == "disabled", 60, "the directory says disabled")
    note = county.home(SENDER) / "note.txt"
    note.write_bytes(b"x")
    at_source = run("send", "--home", county.home(SENDER), "--to", JW, "--title", "t", "--doc-number", "n", note)
    assert at_source.exit_code == 2 and "[recipient_disabled]" in at_source.stderr

    assert run("unit", "enable", "--home", county.hub_home, JW).exit_code == 0
    wait_until(lambda: knows_state(county.home(SENDER), JW) == "enabled", 60, "the directory says enabled")
    again, files = county.send(SENDER, [JW])
    county.wait_hub(again, "delivered", [JW], timeout=90)  # JW's agent reconnected by itself
    assert county.inbox_files(JW, again)["附件1.bin"] == files["附件1.bin"]


def test_a_document_the_recipient_cannot_open_is_quarantined_reported_and_acked(county: Network) -> None:
    # Encrypted for XWB but addressed to ZFB: the hub cannot tell, ZFB cannot decrypt.
    mid, body = county.pack(SENDER, [ZFB], encrypt_for=[XWB], off_network=[ZFB])
    county.queue_raw(SENDER, mid, body, [ZFB])

    county.wait_hub(mid, "rejected", [ZFB])
    code = county.deliveries(mid)[ZFB].code
    assert code in ("decryption_failed", "not_a_recipient")
    rows = county.wait_sent(SENDER, mid, "rejected", [ZFB])
    assert rows[ZFB].code == code
    quarantined = county.quarantined(ZFB, mid)
    assert len(quarantined) == 1 and quarantined[0].code == code
    assert Path(quarantined[0].path).read_bytes() == body
    assert county.received(ZFB, mid) is None and county.inbox_files(ZFB, mid) == {}
    assert county.count(Receipt, Receipt.message_id == mid, Receipt.event == "refused") == 1
    county.wait_empty(f"unit.{ZFB}", 30, "the message acknowledged")
