import logging
import threading

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.consumer import Consumer, Delivery, RejectMessage
from docex.broker.management import Management
from docex.broker.publisher import ConfirmedPublisher, PublishItem
from docex.broker.settings import BrokerSettings
from docex.broker.topology import (
    DEAD_QUEUE,
    declare_hub_topology,
    declare_unit_queue,
    unit_queue,
)

from .conftest import Login
from .support import force_close, ready_count, wait_for

pytestmark = pytest.mark.rabbitmq

A = "qingyuan.yangshan.xxzx"
B = "qingyuan.yangshan.zfb"


def put(channel: BlockingChannel, address: str, count: int, prefix: str = "m") -> list[str]:
    channel.confirm_delivery()
    ids = [f"{prefix}{i}" for i in range(count)]
    for mid in ids:
        channel.basic_publish(
            "docex.deliver", address, mid.encode(), pika.BasicProperties(message_id=mid)
        )
    return ids


def running(consumer: Consumer) -> Consumer:
    consumer.start()
    assert consumer.wait_ready(20), "consumer did not connect"
    return consumer


def test_handler_exception_means_redelivery(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    declare_unit_queue(channel, A)
    ids = put(channel, A, 3)
    seen: list[Delivery] = []
    lock = threading.Lock()

    def flaky(d: Delivery) -> None:
        with lock:
            seen.append(d)
            first = sum(1 for s in seen if s.message_id == d.message_id) == 1
        if first:
            raise RuntimeError("database briefly unavailable")

    consumer = running(Consumer(admin, unit_queue(A), flaky, workers=2))
    try:
        wait_for(lambda: consumer.handled == 3, what="three handled")
    finally:
        consumer.stop()
    assert sorted(d.message_id or "" for d in seen) == sorted(ids * 2)
    retries = [d for d in seen if d.redelivered]
    assert sorted(d.message_id or "" for d in retries) == ids
    assert all(d.delivery_count == 1 for d in retries)
    assert consumer.failed == 3
    assert ready_count(channel, unit_queue(A)) == 0


def test_poison_message_is_dead_lettered(admin: BrokerSettings, channel: BlockingChannel) -> None:
    declare_unit_queue(channel, A, delivery_limit=2)
    put(channel, A, 1, prefix="poison")
    attempts: list[Delivery] = []

    def always_fails(d: Delivery) -> None:
        attempts.append(d)
        raise ValueError("cannot parse")

    consumer = running(Consumer(admin, unit_queue(A), always_fails, workers=1))
    try:
        wait_for(lambda: ready_count(channel, DEAD_QUEUE) == 1, what="dead-lettered message")
    finally:
        consumer.stop()
    assert len(attempts) >= 2
    _, props, body = channel.basic_get(DEAD_QUEUE, auto_ack=True)
    assert props.message_id == "poison0" and body == b"poison0"
    assert props.headers["x-first-death-reason"] == "delivery_limit"
    assert ready_count(channel, unit_queue(A)) == 0


def test_reject_dead_letters_at_once(admin: BrokerSettings, channel: BlockingChannel) -> None:
    declare_unit_queue(channel, A)
    put(channel, A, 1)
    attempts: list[Delivery] = []

    def refuse(d: Delivery) -> None:
        attempts.append(d)
        raise RejectMessage("malformed envelope")

    consumer = running(Consumer(admin, unit_queue(A), refuse, workers=1))
    try:
        wait_for(lambda: ready_count(channel, DEAD_QUEUE) == 1, what="dead-lettered message")
    finally:
        consumer.stop()
    assert len(attempts) == 1
    _, props, _ = channel.basic_get(DEAD_QUEUE, auto_ack=True)
    assert props.headers["x-first-death-reason"] == "rejected"


def test_ack_only_after_handler_returned(
    hub_login: Login, channel: BlockingChannel, management: Management
) -> None:
    """Kill the connection while the handler runs: the message must come back."""
    declare_unit_queue(channel, A)
    put(channel, A, 1)
    calls: list[Delivery] = []
    started, release = threading.Event(), threading.Event()

    def slow(d: Delivery) -> None:
        calls.append(d)
        if len(calls) == 1:
            started.set()
            release.wait(20)

    consumer = running(Consumer(hub_login.settings, unit_queue(A), slow, workers=2))
    try:
        assert started.wait(20)
        force_close(management, hub_login.user)
        wait_for(lambda: len(calls) == 2, what="redelivery after connection loss")
        release.set()
        wait_for(lambda: consumer.handled == 1, what="ack of the redelivered message")
    finally:
        release.set()
        consumer.stop()
    assert calls[1].message_id == calls[0].message_id and calls[1].redelivered
    assert consumer.sessions == 2
    assert ready_count(channel, unit_queue(A)) == 0


@pytest.mark.parametrize("style", ["publish", "forward", "bridge"])
def test_forwarder_survives_connection_loss_and_loses_nothing(
    hub_login: Login, channel: BlockingChannel, management: Management, style: str
) -> None:
    """Consume A -> publish to B with confirm -> ack A, with a broker outage mid-way."""
    declare_unit_queue(channel, A)
    declare_unit_queue(channel, B)
    ids = put(channel, A, 300)
    halfway, resume = threading.Event(), threading.Event()
    forwarded = 0
    lock = threading.Lock()

    def forward(d: Delivery) -> None:
        nonlocal forwarded
        with lock:
            forwarded += 1
            if forwarded == 100:
                halfway.set()
        if forwarded == 100:
            resume.wait(20)
        if style in ("forward", "bridge"):
            d.forward(PublishItem("docex.deliver", B, d.body, d.message_id or ""), via=other)
        else:
            assert d.publisher is not None
            d.publisher.publish("docex.deliver", B, d.body, message_id=d.message_id or "")

    # "bridge": forward through a publisher with its own connection (the other side).
    other = ConfirmedPublisher.open(hub_login.settings) if style == "bridge" else None
    received: set[str] = set()
    sink = running(Consumer(hub_login.settings, unit_queue(B), lambda d: _add(received, d)))
    forwarder = running(
        Consumer(hub_login.settings, unit_queue(A), forward, workers=8, prefetch=32)
    )
    try:
        assert halfway.wait(20)
        force_close(management, hub_login.user)  # kills both consumers' connections
        resume.set()
        wait_for(lambda: received == set(ids), timeout=30, what="every message at B")
    finally:
        resume.set()
        forwarder.stop()
        sink.stop()
        if other is not None:
            other.close()
    assert forwarder.sessions >= 2 and sink.sessions >= 2
    assert ready_count(channel, unit_queue(A)) == 0
    assert ready_count(channel, unit_queue(B)) == 0


def _add(into: set[str], d: Delivery) -> None:
    into.add(d.message_id or "")


def test_stop_lets_running_handler_finish_and_returns_the_rest(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    declare_unit_queue(channel, A)
    put(channel, A, 5)
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow(d: Delivery) -> None:
        started.set()
        release.wait(20)
        done.append(d.message_id or "")

    consumer = running(Consumer(admin, unit_queue(A), slow, workers=1, prefetch=10))
    assert started.wait(20)
    stopper = threading.Thread(target=consumer.stop)
    stopper.start()
    wait_for(lambda: consumer.stopping, what="stop requested")
    release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert done == ["m0"]
    # Not started: back in the queue (the quorum queue requeues asynchronously).
    wait_for(lambda: ready_count(channel, unit_queue(A)) == 4, what="four requeued")


def test_publish_many_from_handler_fans_out(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    units = [f"qingyuan.yangshan.u{i}" for i in range(5)]
    for address in [A, *units]:
        declare_unit_queue(channel, address)
    put(channel, A, 4)

    def fan_out(d: Delivery) -> None:
        assert d.publisher is not None
        items = [PublishItem("docex.deliver", u, d.body, d.message_id or "") for u in units]
        d.publisher.publish_many(items)

    consumer = running(Consumer(admin, unit_queue(A), fan_out, workers=3))
    try:
        wait_for(lambda: consumer.handled == 4, what="fan-out of four messages")
    finally:
        consumer.stop()
    assert [ready_count(channel, unit_queue(u)) for u in units] == [4] * 5


def test_failed_forward_requeues_the_delivery(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    declare_unit_queue(channel, A, delivery_limit=1)
    put(channel, A, 1)
    attempts: list[Delivery] = []

    def to_nowhere(d: Delivery) -> None:
        attempts.append(d)
        d.forward(PublishItem("docex.deliver", "qingyuan.nobody", d.body, d.message_id or ""))

    consumer = running(Consumer(admin, unit_queue(A), to_nowhere, workers=1))
    try:
        wait_for(lambda: ready_count(channel, DEAD_QUEUE) == 1, what="dead-lettered message")
    finally:
        consumer.stop()
    assert len(attempts) >= 2 and attempts[1].redelivered
    assert consumer.handled == 0


def test_missing_queue_is_logged_and_retried(
    admin: BrokerSettings, channel: BlockingChannel, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Delivery] = []
    consumer = Consumer(admin, unit_queue("qingyuan.nobody"), calls.append, reconnect_initial=0.05)
    with caplog.at_level(logging.WARNING, logger="docex.broker.consumer"):
        consumer.start()
        wait_for(lambda: len(caplog.records) >= 2, what="retry log lines")
        consumer.stop()
    assert not consumer.is_ready and not calls
    assert "NOT_FOUND" in caplog.records[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)  # one line each, no traceback


def test_on_connected_declares_before_consuming(admin: BrokerSettings) -> None:
    got: list[Delivery] = []
    queue = unit_queue(A)

    def setup(ch: BlockingChannel) -> None:
        declare_hub_topology(ch)
        declare_unit_queue(ch, A)

    consumer = running(Consumer(admin, queue, got.append, on_connected=setup))
    try:
        consumer.publisher.publish("docex.deliver", A, b"x", message_id="m0")
        wait_for(lambda: len(got) == 1, what="delivery")
    finally:
        consumer.stop()


class Gated:
    """Handlers that hold the first call at a gate, so that the test can queue a batch's
    messages behind it: the worker's next call then takes all of them at once."""

    def __init__(self, poison: str = "") -> None:
        self.poison = poison
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls: list[list[str]] = []  # message ids per call, batch or single
        self.batches: list[list[str]] = []
        self.done: list[str] = []
        self._lock = threading.Lock()

    def _gate(self, ids: list[str]) -> None:
        with self._lock:
            self.calls.append(ids)
            first = len(self.calls) == 1
        if first:
            self.entered.set()
            assert self.release.wait(20)

    def one(self, d: Delivery) -> None:
        self._gate([d.message_id or ""])
        if d.message_id == self.poison:
            raise ValueError("cannot parse")
        with self._lock:
            self.done.append(d.message_id or "")

    def batch(self, ds: list[Delivery]) -> None:
        ids = [d.message_id or "" for d in ds]
        self._gate(ids)
        with self._lock:
            self.batches.append(ids)
        if self.poison in ids:
            raise ValueError("one of the batch cannot be parsed")
        with self._lock:
            self.done.extend(ids)


def _batch_behind_gate(channel: BlockingChannel, consumer: Consumer, gated: Gated, ids_count: int) -> list[str]:
    assert gated.entered.wait(20), "the first message did not reach the handler"
    ids = put(channel, A, ids_count, prefix="b")
    wait_for(lambda: consumer.queued == ids_count, what="the batch queued behind the gate")
    gated.release.set()
    return ids


def test_waiting_messages_are_handled_as_one_batch(admin: BrokerSettings, channel: BlockingChannel) -> None:
    declare_unit_queue(channel, A)
    put(channel, A, 1, prefix="first")
    gated = Gated()
    consumer = running(Consumer(admin, unit_queue(A), gated.one, workers=1, batch=gated.batch, batch_size=16))
    try:
        ids = _batch_behind_gate(channel, consumer, gated, 5)
        wait_for(lambda: consumer.handled == 6, what="all acknowledged")
    finally:
        gated.release.set()
        consumer.stop()
    assert gated.calls == [["first0"], ids]  # alone, one goes alone; the waiting five together
    assert gated.batches == [ids] and consumer.batches == 1 and consumer.batch_fallbacks == 0
    assert ready_count(channel, unit_queue(A)) == 0


def test_a_poison_message_in_a_batch_is_retried_alone_and_the_others_go_once(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    declare_unit_queue(channel, A, delivery_limit=2)
    put(channel, A, 1, prefix="first")
    gated = Gated(poison="b2")
    consumer = running(Consumer(admin, unit_queue(A), gated.one, workers=1, batch=gated.batch, batch_size=16))
    try:
        ids = _batch_behind_gate(channel, consumer, gated, 5)
        wait_for(lambda: ready_count(channel, DEAD_QUEUE) == 1, what="the poison dead-lettered")
        wait_for(lambda: consumer.handled == 5, what="the others acknowledged")
    finally:
        gated.release.set()
        consumer.stop()
    assert gated.batches[0] == ids and consumer.batch_fallbacks >= 1
    # Each of the others was handled exactly once (the failed batch did none of them).
    assert sorted(gated.done) == sorted(["first0", *(i for i in ids if i != "b2")])
    _, props, _ = channel.basic_get(DEAD_QUEUE, auto_ack=True)
    assert props.message_id == "b2"
    assert ready_count(channel, unit_queue(A)) == 0
