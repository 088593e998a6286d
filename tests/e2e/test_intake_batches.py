"""The hub's intake takes what already waits as one batch (issue 16): one transaction, one
audit append, one confirmed publication. Deterministic: the intake runs in this process on
the real broker and store, and a gate holds its one worker on a first message while the
test queues a batch behind it, so that the next call takes the whole batch.

A refusal in a batch refuses that document only; a poison document (one whose recording
fails) sends the batch back one by one, and the others go exactly once; a crash after the
batch's commit, before anything was published, leads to redelivery: every document
reaches each recipient once, recorded once, the audit chain intact."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from docex.agent.service import broker_settings
from docex.broker import Consumer, Delivery, Management
from docex.broker.errors import BrokerConnectionLost
from docex.broker.publisher import connect
from docex.broker.topology import (
    DEAD_QUEUE,
    INGRESS_EXCHANGE,
    INGRESS_QUEUE,
    ingress_routing_key,
    unit_queue,
)
from docex.cli.localnet import MANAGEMENT_URL
from docex.hub import audit, broker
from docex.hub.intake import Intake
from docex.hub.models import Document, Outbox
from docex.hub.service import make_context
from docex.protocols import messages
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

ZFB, JW = "qingyuan.yangshan.zfb", "qingyuan.yangshan.xwb"
TO = (ZFB, JW)
# The test's own connections log in as the hub: the crash (closing the hub's connections)
# waits until none of them is open, so that it takes down only the intake's.
HUB_LOGIN = threading.Lock()


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:
    net = network(3)  # the information centre (sends), 县委办 and 县府办; nothing running
    broker.declare(net.config, units=tuple(net.addresses))
    yield net


@dataclass
class GatedIntake:
    """The hub's intake in a consumer of this process, its first call held at a gate."""

    intake: Intake
    consumer: Consumer | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    calls: list[int] = field(default_factory=list)  # deliveries per call

    def _gate(self, count: int) -> None:
        self.calls.append(count)
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(60)

    def one(self, delivery: Delivery) -> None:
        self._gate(1)
        self.intake(delivery)

    def batch(self, deliveries: list[Delivery]) -> None:
        self._gate(len(deliveries))
        self.intake.batch(deliveries)


@pytest.fixture
def intake(county: Network) -> Iterator[GatedIntake]:
    ctx = make_context(county.config, None)
    gated = GatedIntake(Intake(ctx))
    gated.consumer = Consumer(broker.settings(county.config), INGRESS_QUEUE, gated.one, workers=1,
                              batch=gated.batch, batch_size=16, name="test-intake-batches",
                              reconnect_initial=0.1)
    _purge(county)
    try:
        yield gated
    finally:
        gated.release.set()
        gated.consumer.stop()
        ctx.db.dispose()


def _purge(net: Network) -> None:
    with HUB_LOGIN:
        conn = connect(broker.settings(net.config), "test-purge")
        try:
            ch = conn.channel()
            for queue in [INGRESS_QUEUE, DEAD_QUEUE, *(unit_queue(a) for a in net.addresses)]:
                ch.queue_purge(queue)
        finally:
            conn.close()


def _count(net: Network, queue: str) -> int:
    with HUB_LOGIN:
        conn = connect(broker.settings(net.config), "test-count")
        try:
            return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
        finally:
            conn.close()


def _publish(net: Network, sender: str, items: list[tuple[str, bytes, str]]) -> None:
    """Publish as the sending unit (RabbitMQ checks user_id against its login)."""
    ctx = net.agent(sender)
    conn = connect(broker_settings(ctx), "test-sender")
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for message_id, body, kind in items:
            ch.basic_publish(INGRESS_EXCHANGE, ingress_routing_key(kind), body, pika.BasicProperties(
                message_id=message_id, type=kind, user_id=ctx.broker_user, delivery_mode=2))
    finally:
        conn.close()


def _run_batch(net: Network, gated: GatedIntake, documents: list[tuple[str, bytes]]) -> None:
    """A heartbeat first (held at the gate), then the documents queued behind it: released,
    the worker's next call takes them all."""
    assert gated.consumer is not None
    _publish(net, SENDER, [("heartbeat", b"", messages.HEARTBEAT)])
    gated.consumer.start()
    assert gated.entered.wait(60), "the intake did not take the first message"
    _publish(net, SENDER, [(mid, body, messages.DOCUMENT) for mid, body in documents])
    wait_until(lambda: gated.consumer is not None and gated.consumer.queued == len(documents), 60,
               "the batch queued behind the gate")
    gated.release.set()


def _accepted(net: Network, ids: list[str]) -> int:
    with net.db.read() as s:
        return int(s.execute(select(func.count()).select_from(Document).where(Document.message_id.in_(ids)))
                   .scalar_one())


def _chain_ok(net: Network) -> bool:
    with net.db.read() as s:
        return audit.verify_chain(s).ok


def _tampered(body: bytes) -> bytes:
    at = len(body) - 40  # inside the outer signature's value
    return body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1:]


def test_a_batch_is_recorded_together_and_a_refusal_in_it_refuses_only_that_one(
    county: Network, intake: GatedIntake
) -> None:
    good = [county.pack(SENDER, TO) for _ in range(4)]
    bad_id, bad_body = county.pack(SENDER, TO)
    batch = [good[0], good[1], (bad_id, _tampered(bad_body)), good[2], good[3]]
    ids = [mid for mid, _ in good]
    _run_batch(county, intake, batch)
    wait_until(lambda: all(_count(county, unit_queue(a)) == 4 for a in TO), 60, "four copies in each inbox")
    assert intake.consumer is not None
    wait_until(lambda: intake.consumer is not None and intake.consumer.handled == 6, 60, "all acknowledged")
    assert intake.calls == [1, 5]  # the heartbeat alone, then the five in one call
    assert intake.consumer.batches == 1 and intake.consumer.batch_fallbacks == 0
    assert _accepted(county, ids) == 4 and _accepted(county, [bad_id]) == 0
    assert len(county.rejections(bad_id)) == 1
    for mid in ids:
        assert set(county.hub_states(mid).values()) == {"routed"}
        assert [e.action for e in county.audit(mid)] == ["document.accept", "document.route"]
    assert _chain_ok(county)
    assert _count(county, INGRESS_QUEUE) == 0


def test_a_poison_document_sends_the_batch_back_one_by_one_and_the_others_go_once(
    county: Network, intake: GatedIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [county.pack(SENDER, TO) for _ in range(4)]
    poison = docs[1][0]
    record = Intake._record_many

    def failing(self: Intake, s: Session, batch: list[Any]) -> list[Any]:
        if any(d.message_id == poison for d in batch):  # inside the batch's transaction
            raise RuntimeError("the store cannot take this one")
        return record(self, s, batch)

    monkeypatch.setattr(Intake, "_record_many", failing)
    _run_batch(county, intake, docs)
    wait_until(lambda: _count(county, DEAD_QUEUE) == 1, 120, "the poison document dead-lettered")
    others = [mid for mid, _ in docs if mid != poison]
    wait_until(lambda: all(_count(county, unit_queue(a)) == 3 for a in TO), 60, "three copies in each inbox")
    assert intake.consumer is not None and intake.consumer.batch_fallbacks >= 1
    assert _accepted(county, others) == 3 and _accepted(county, [poison]) == 0
    for mid in others:  # recorded once though the batch ran twice
        assert [e.action for e in county.audit(mid)] == ["document.accept", "document.route"]
    assert county.audit(poison) == []
    assert _chain_ok(county)


def test_a_crash_after_the_batch_commit_redelivers_without_loss_or_duplicates(
    county: Network, intake: GatedIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [county.pack(SENDER, TO) for _ in range(5)]
    ids = [mid for mid, _ in docs]
    crashed: list[list[str]] = []

    def crash(self: Intake, message_ids: list[str]) -> None:
        if crashed:
            return
        crashed.append(message_ids)
        # The hub dies here: its connection goes, nothing is published, nothing acked.
        with HUB_LOGIN, Management(MANAGEMENT_URL, "guest", "guest") as mgmt:
            mgmt.close_user_connections(broker.hub_user(county.config), "test: the hub crashed mid-batch")
        raise BrokerConnectionLost("the hub crashed")

    monkeypatch.setattr(Intake, "_batch_committed", crash)
    _run_batch(county, intake, docs)
    wait_until(lambda: all(_count(county, unit_queue(a)) == 5 for a in TO), 120, "five copies in each inbox")
    wait_until(lambda: _count(county, INGRESS_QUEUE) == 0 and all(
        set(county.hub_states(m).values()) == {"routed"} for m in ids), 60, "all routed")
    assert crashed == [ids]  # the crash came after the whole batch was committed
    assert intake.consumer is not None and intake.consumer.sessions >= 2
    assert _accepted(county, ids) == 5
    for mid in ids:  # accepted once, routed once: the redelivery published what was owed
        assert [e.action for e in county.audit(mid)] == ["document.accept", "document.route"]
    with county.db.read() as s:
        unpublished = s.execute(select(func.count()).select_from(Outbox)
                                .where(Outbox.message_id.in_(ids), Outbox.published_at.is_(None))).scalar_one()
    assert unpublished == 0
    # Exactly one copy per recipient (nothing had gone out before the crash), one notice each.
    assert all(_count(county, unit_queue(a)) == 5 for a in TO)
    assert _count(county, unit_queue(SENDER)) == 5
    assert _chain_ok(county)
