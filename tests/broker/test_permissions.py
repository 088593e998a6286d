"""What a unit's broker user may and may not do, enforced by RabbitMQ itself."""

from collections.abc import Callable

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.consumer import Consumer, Delivery
from docex.broker.errors import BrokerError
from docex.broker.publisher import ConfirmedPublisher
from docex.broker.topology import declare_unit_queue, unit_queue

from .conftest import Login
from .support import ready_count, wait_for

pytestmark = pytest.mark.rabbitmq

A = "qingyuan.yangshan.xxzx"
B = "qingyuan.yangshan.zfb"


@pytest.fixture
def unit_a(channel: BlockingChannel, unit_login: Callable[[str], Login]) -> Login:
    declare_unit_queue(channel, A)
    declare_unit_queue(channel, B)
    return unit_login(A)


def test_unit_publishes_to_ingress_with_its_user_id(
    channel: BlockingChannel, unit_a: Login
) -> None:
    with ConfirmedPublisher.open(unit_a.settings) as pub:
        pub.publish("docex.ingress", "ingress", b"env", message_id="m1", user_id=unit_a.user)
    method, props, body = channel.basic_get("hub.ingress", auto_ack=True)
    assert body == b"env"
    assert props.user_id == unit_a.user and props.message_id == "m1"
    assert props.delivery_mode == 2


def test_user_id_other_than_login_is_refused(channel: BlockingChannel, unit_a: Login) -> None:
    with ConfirmedPublisher.open(unit_a.settings) as pub:
        with pytest.raises(BrokerError) as info:
            pub.publish("docex.ingress", "ingress", b"x", message_id="m1", user_id="zfb")
        assert info.value.status == 406  # PRECONDITION_FAILED
        # The publisher recovers on a new channel.
        pub.publish("docex.ingress", "ingress", b"ok", message_id="m2", user_id=unit_a.user)
    assert ready_count(channel, "hub.ingress") == 1


def test_unit_may_not_publish_to_deliver(channel: BlockingChannel, unit_a: Login) -> None:
    with ConfirmedPublisher.open(unit_a.settings) as pub, pytest.raises(BrokerError) as info:
        pub.publish("docex.deliver", B, b"x", message_id="m1", user_id=unit_a.user)
    assert info.value.status == 403
    assert "ACCESS_REFUSED" in str(info.value)
    assert ready_count(channel, unit_queue(B)) == 0


def test_unit_reads_own_queue_not_another(channel: BlockingChannel, unit_a: Login) -> None:
    channel.confirm_delivery()
    for address in (A, B):
        channel.basic_publish(
            "docex.deliver", address, b"doc", pika.BasicProperties(message_id=address)
        )

    conn = pika.BlockingConnection(unit_a.settings.parameters())
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            conn.channel().basic_get(unit_queue(B))
        assert info.value.reply_code == 403
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            conn.channel().queue_declare("unit.mine", durable=True)  # configure: nothing
        assert info.value.reply_code == 403
    finally:
        conn.close()

    got: list[Delivery] = []
    consumer = Consumer(unit_a.settings, unit_queue(A), got.append, workers=1)
    consumer.start()
    try:
        wait_for(lambda: len(got) == 1, what="own inbox delivery")
    finally:
        consumer.stop()
    assert got[0].message_id == A
    assert ready_count(channel, unit_queue(A)) == 0  # acked
    assert ready_count(channel, unit_queue(B)) == 1  # untouched
