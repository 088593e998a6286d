"""The agent service: the outbox folder of office systems, the outbox publisher, and the
service itself on the real broker (its own vhost; no hub running: the test reads the
hub's ingress queue), which announces itself, publishes what is queued as its own broker
user, receives and receipts, and stops promptly."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import func, select

from docex.agent.context import AgentContext
from docex.agent.sending import Draft, queue_document
from docex.agent.service import AgentService, OutboxPublisher, scan_outbox_folder
from docex.agent.store import AwaitingTrust, Outgoing, Quarantined, Received, Sent, SentRecipient
from docex.broker import BrokerConnectionLost, BrokerSettings, PublishItem, amqp_url
from docex.broker.topology import DELIVER_EXCHANGE, INGRESS_EXCHANGE, INGRESS_QUEUE, RECEIPTS_QUEUE
from docex.cli.localnet import LocalNetwork
from docex.hub.units import CsvUnit
from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.keys import load_certificate, load_private_key
from docex.protocols import envelope, messages
from docex.protocols.directory import sign_directory, verify_directory
from docex.protocols.manifest import Manifest, new_message_id
from docex.protocols.receipt import envelope_digest
from tests.agent.homes import County, build_county, outgoing
from tests.conftest import Pki
from tests.e2e.support import wait_until

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("county"))


def _drop(folder: Path, stem: str, meta: dict[str, Any], files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / f"{stem}.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")


def _sent_count(ctx: AgentContext) -> int:
    with ctx.store.session() as s:
        return int(s.execute(select(func.count()).select_from(Sent)).scalar_one())


def test_the_outbox_folder_queues_once_and_files_away(county: County) -> None:
    ctx = county.context(XXZX)
    folder = ctx.config.outbox
    meta = {"to": [ZFB], "title": "关于培训的通知", "doc_number": "阳信发〔2011〕5号", "files": ["培训.txt"]}
    _drop(folder, "培训", meta, {"培训.txt": "8月24日培训。".encode()})
    before = _sent_count(ctx)
    assert scan_outbox_folder(ctx) == 1
    done = [p for p in (folder / "sent").iterdir()]
    assert len(done) == 1 and sorted(p.name for p in done[0].iterdir()) == ["培训.json", "培训.txt"]
    mid = done[0].name
    assert outgoing(ctx, mid).kind == messages.DOCUMENT
    # The same drop again (an office system retrying after a crash): the same id, not sent twice.
    _drop(folder, "培训", meta, {"培训.txt": "8月24日培训。".encode()})
    scan_outbox_folder(ctx)
    assert _sent_count(ctx) == before + 1
    assert not list(folder.glob("*.json"))


def test_a_bad_drop_is_filed_under_failed_with_its_error(county: County) -> None:
    ctx = county.context(XXZX)
    folder = ctx.config.outbox
    _drop(folder, "坏的", {"to": ["qingyuan.yangshan.nosuch"], "title": "t", "files": ["x.txt"]}, {"x.txt": b"x"})
    assert scan_outbox_folder(ctx) == 0
    error = (folder / "failed" / "坏的" / "error.txt").read_text("utf-8")
    assert "[unknown_recipient]" in error and (folder / "failed" / "坏的" / "x.txt").exists()


class Recorder:
    """An in-memory stand-in for the confirmed publisher (the flush logic is under test)."""

    def __init__(self, fail: bool = False) -> None:
        self.items: list[PublishItem] = []
        self.fail = fail

    def publish_many(self, items: list[PublishItem], **_: Any) -> int:
        if self.fail:
            raise BrokerConnectionLost("connection lost before the confirms")
        self.items.extend(items)
        return len(items)


def test_flush_marks_rows_sent_only_after_the_broker_confirmed(county: County) -> None:
    ctx = county.context(FGJ)
    mid = queue_document(ctx, Draft(to=(ZFB,), title="t", doc_number="n", files={"a.txt": b"a"}))
    with pytest.raises(BrokerConnectionLost):
        OutboxPublisher(ctx).flush(Recorder(fail=True))  # type: ignore[arg-type]
    assert outgoing(ctx, mid).sent_at is None

    recorder = Recorder()
    assert OutboxPublisher(ctx).flush(recorder) >= 1  # type: ignore[arg-type]
    item = next(i for i in recorder.items if i.message_id == mid)
    assert (item.exchange, item.type, item.user_id) == (INGRESS_EXCHANGE, messages.DOCUMENT, f"t.{FGJ}")
    assert outgoing(ctx, mid).sent_at is not None
    with ctx.store.session() as s:
        assert s.get(Sent, mid).state == "sent"  # type: ignore[union-attr]
        states = set(s.execute(select(SentRecipient.state).where(SentRecipient.message_id == mid)).scalars())
    assert states == {"sent"}
    assert OutboxPublisher(ctx).flush(Recorder()) == 0  # nothing left


# -- the service on the real broker ---------------------------------------------------------------
@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    units = [CsvUnit(XXZX, "阳山县信息中心", "county", "", ""), CsvUnit(ZFB, "阳山县人民政府办公室", "government", "", "")]
    network = LocalNetwork.create(tmp_path_factory.mktemp("svc"), "qingyuan.yangshan", units, tag=f"t{uuid.uuid4().hex[:8]}")
    yield network
    network.destroy()


def _ingress(net: LocalNetwork) -> list[tuple[str, str, str]]:
    """Drain the hub's ingress queues (no hub runs here): (type, message id, user id) of each."""
    admin = BrokerSettings(url=amqp_url(net.config.broker.management_user, net.config.broker.management_password, net.config.broker.vhost))
    conn = pika.BlockingConnection(admin.parameters("docex-test-reader"))
    got = []
    try:
        channel = conn.channel()
        for queue in (INGRESS_QUEUE, RECEIPTS_QUEUE):
            while True:
                method, props, _ = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                got.append((props.type, props.message_id, props.user_id))
        return got
    finally:
        conn.close()


@pytest.mark.rabbitmq
def test_the_service_announces_itself_publishes_as_its_user_receives_and_stops(net: LocalNetwork) -> None:
    me = AgentContext.open(net.agents[ZFB])
    sender = AgentContext.open(net.agents[XXZX])
    service = AgentService(me)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        assert service.connected.wait(30) and service.consumer.wait_ready(30)
        user = me.broker_user
        seen: list[tuple[str, str, str]] = []

        def arrived(kind: str, message_id: str | None = None) -> bool:
            seen.extend(_ingress(net))
            return any(t == kind and u == user and (message_id is None or m == message_id) for t, m, u in seen)

        wait_until(lambda: arrived(messages.DIRECTORY_REQUEST) and arrived(messages.HEARTBEAT), 30, "announced")

        mine = queue_document(me, Draft(to=(XXZX,), title="回复", doc_number="阳府办〔2011〕2号", files={"a.txt": b"a"}))
        wait_until(lambda: arrived(messages.DOCUMENT, mine), 30, "the queued document published")

        theirs = queue_document(sender, Draft(to=(ZFB,), title="通知", doc_number="阳信发〔2011〕9号", files={"b.txt": b"b"}))
        admin = BrokerSettings(url=amqp_url(net.config.broker.management_user, net.config.broker.management_password, net.config.broker.vhost))
        conn = pika.BlockingConnection(admin.parameters("docex-test-hub"))
        conn.channel().basic_publish(DELIVER_EXCHANGE, ZFB, outgoing(sender, theirs).body,
                                     pika.BasicProperties(message_id=theirs, type=messages.DOCUMENT, delivery_mode=2))
        conn.close()
        wait_until(lambda: arrived(messages.RECEIPT, messages.receipt_key(theirs, ZFB, "delivered")), 30,
                   "received and receipted")
        with me.store.session() as s:
            assert s.get(Received, theirs) is not None
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    with me.store.session() as s:
        assert s.execute(select(Outgoing.id).where(Outgoing.sent_at.is_(None))).first() is None


@pytest.mark.rabbitmq
def test_a_document_under_a_ca_not_trusted_yet_is_kept_asks_the_hub_and_is_delivered(
        net: LocalNetwork, tmp_path: Path) -> None:
    """The race of a link just made, gated: ZFB's agent receives a document signed under a CA
    its snapshot does not carry yet. It keeps the document in its store (the broker's copy is
    acked: a restart does not get it back from the queue), asks the hub for its directory, and
    delivers the document when the hub's snapshot with that CA comes."""
    city = CertificateAuthority.init(tmp_path / "city-ca", "清远市电子公文交换中心", None)
    city.issue_unit("qingyuan.swb", "中共清远市委办公室", tmp_path / "swb", None)
    me = AgentContext.open(net.agents[ZFB])
    manifest = Manifest(message_id=new_message_id(), sender="qingyuan.swb", recipients=(ZFB,), title="联网通知",
                        doc_number="清办发〔2011〕9号")
    body = envelope.pack(manifest, {"a.txt": b"a"}, UnitCredentials.load(tmp_path / "swb", None), [me.creds.enc_cert])
    mid, digest = manifest.message_id, envelope_digest(body)
    admin = BrokerSettings(url=amqp_url(net.config.broker.management_user, net.config.broker.management_password,
                                        net.config.broker.vhost))
    conn = pika.BlockingConnection(admin.parameters("docex-test-hub"))
    channel = conn.channel()
    seen: list[tuple[str, str, str]] = []

    def arrived(kind: str, key: str) -> bool:
        seen.extend(_ingress(net))
        return any(t == kind and m.startswith(key) for t, m, _ in seen)

    def start() -> tuple[AgentService, threading.Thread]:
        service = AgentService(AgentContext.open(net.agents[ZFB]))
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        assert service.connected.wait(30) and service.consumer.wait_ready(30)
        return service, thread

    service, thread = start()
    try:
        channel.basic_publish(DELIVER_EXCHANGE, ZFB, body,
                              pika.BasicProperties(message_id=mid, type=messages.DOCUMENT, delivery_mode=2))
        wait_until(lambda: arrived(messages.DIRECTORY_REQUEST, f"{messages.DIRECTORY_REQUEST}|trust|"), 30,
                   "the agent to ask the hub for its directory")
        service.stop()
        thread.join(30)
        with me.store.session() as s:
            assert s.get(AwaitingTrust, digest) is not None and s.get(Received, mid) is None
        assert channel.queue_declare(f"unit.{ZFB}", passive=True).method.message_count == 0
        service, thread = start()
        # The hub's next snapshot carries the city's CA (the hub trusts it: it routed the document).
        current = verify_directory((net.agents[ZFB] / "directory.der").read_bytes(), me._home_trust())
        fresh = replace(current, version=current.version + 1, anchors=((city.directory / "ca.crt").read_text(),),
                        crls=(*current.crls, (city.directory / "crl.pem").read_text()))
        hub_dir = net.config.hub_dir
        der = sign_directory(fresh, load_certificate(hub_dir / "server.crt"), load_private_key(hub_dir / "server.key", None))
        channel.basic_publish(DELIVER_EXCHANGE, ZFB, der, pika.BasicProperties(type=messages.DIRECTORY, delivery_mode=2))
        wait_until(lambda: arrived(messages.RECEIPT, messages.receipt_key(mid, ZFB, "delivered")), 30,
                   "the document delivered and receipted")
        with me.store.session() as s:
            assert s.get(Received, mid) is not None and s.get(AwaitingTrust, digest) is None
            assert s.execute(select(Quarantined.id)).first() is None
    finally:
        conn.close()
        service.stop()
        thread.join(30)
