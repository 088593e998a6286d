import threading

import pytest
from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.errors import BrokerConnectionLost, BrokerError, PublishNacked, Unroutable
from docex.broker.management import Management
from docex.broker.publisher import ConfirmedPublisher, PublishItem
from docex.broker.settings import BrokerSettings
from docex.broker.topology import declare_unit_queue, hub_permissions, unit_queue

from .conftest import Login
from .support import force_close, ready_count, wait_for

pytestmark = pytest.mark.rabbitmq

UNITS = [f"qingyuan.yangshan.u{i:03d}" for i in range(125)]


def test_fan_out_to_125_queues_in_one_batch(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    for address in UNITS:
        declare_unit_queue(channel, address)
    items = [
        PublishItem("docex.deliver", a, b"envelope", "msg-1", headers={"x-recipient": a})
        for a in UNITS
    ]
    with ConfirmedPublisher.open(admin) as pub:
        assert pub.publish_many(items) == 125
        assert pub.publish_many([]) == 0
    for address in UNITS:
        assert ready_count(channel, unit_queue(address)) == 1
    _, props, body = channel.basic_get(unit_queue(UNITS[7]), auto_ack=True)
    assert body == b"envelope"
    assert props.message_id == "msg-1" and props.headers["x-recipient"] == UNITS[7]


def test_unroutable_names_the_items(admin: BrokerSettings, channel: BlockingChannel) -> None:
    declare_unit_queue(channel, UNITS[0])
    good = PublishItem("docex.deliver", UNITS[0], b"a", "m1")
    lost = PublishItem("docex.deliver", "qingyuan.yangshan.nobody", b"b", "m1")
    with ConfirmedPublisher.open(admin) as pub:
        with pytest.raises(Unroutable) as info:
            pub.publish_many([good, lost, good])
        assert info.value.unroutable == [lost]
        # Not mandatory: dropped silently by RabbitMQ, confirmed all the same.
        pub.publish("docex.deliver", "nobody", b"c", message_id="m2", mandatory=False)
    assert ready_count(channel, unit_queue(UNITS[0])) == 2


def test_nack_is_reported(admin: BrokerSettings, channel: BlockingChannel) -> None:
    # A full queue that refuses publishes makes RabbitMQ nack.
    channel.queue_declare("tiny", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.queue_bind("tiny", "docex.deliver", "tiny")
    first = PublishItem("docex.deliver", "tiny", b"1", "m1")
    second = PublishItem("docex.deliver", "tiny", b"2", "m2")
    with ConfirmedPublisher.open(admin) as pub, pytest.raises(PublishNacked) as info:
        pub.publish_many([first, second])
    assert info.value.nacked == [second]
    assert ready_count(channel, "tiny") == 1


def test_missing_exchange_is_a_named_error_and_publisher_recovers(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    with ConfirmedPublisher.open(admin) as pub:
        with pytest.raises(BrokerError) as info:
            pub.publish("docex.nowhere", "k", b"x", message_id="m1")
        assert info.value.status == 404
        pub.publish("docex.ingress", "ingress", b"x", message_id="m2")
    assert ready_count(channel, "hub.ingress") == 1


def test_standalone_publisher_reconnects_after_connection_loss(
    hub_login: Login, channel: BlockingChannel, management: Management
) -> None:
    with ConfirmedPublisher.open(hub_login.settings) as pub:
        pub.publish("docex.ingress", "ingress", b"1", message_id="m1")
        force_close(management, hub_login.user)
        pub.publish("docex.ingress", "ingress", b"2", message_id="m2")
        assert pub.is_open and pub.is_connected
    assert ready_count(channel, "hub.ingress") == 2


def test_many_threads_share_one_publisher(admin: BrokerSettings, channel: BlockingChannel) -> None:
    declare_unit_queue(channel, UNITS[0])
    errors: list[BaseException] = []

    def send(pub: ConfirmedPublisher, worker: int) -> None:
        try:
            for i in range(25):
                pub.publish("docex.deliver", UNITS[0], b"x", message_id=f"{worker}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with ConfirmedPublisher.open(admin) as pub:
        threads = [threading.Thread(target=send, args=(pub, w)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    assert ready_count(channel, unit_queue(UNITS[0])) == 200


def test_publish_waits_for_the_broker_to_come_back(
    hub_login: Login, channel: BlockingChannel, management: Management, vhost: str
) -> None:
    """An outage shorter than the timeout is invisible to the sender."""
    with ConfirmedPublisher.open(hub_login.settings) as pub:
        # Outage: the user loses the vhost and its connection; reconnects now fail.
        management.clear_permissions(vhost, hub_login.user)
        force_close(management, hub_login.user)
        wait_for(lambda: not pub.is_connected, what="publisher notices the outage")
        assert pub.is_open  # still usable: it reconnects by itself
        done = threading.Event()

        def send() -> None:
            pub.publish("docex.ingress", "ingress", b"x", message_id="m1", timeout=60)
            done.set()

        sender = threading.Thread(target=send)
        sender.start()
        assert not done.wait(0.5)  # waiting, not failing
        management.set_permissions(vhost, hub_login.user, *hub_permissions())
        sender.join(60)
        assert done.is_set()
    assert ready_count(channel, "hub.ingress") == 1


def test_closed_publisher_refuses_at_once(admin: BrokerSettings) -> None:
    pub = ConfirmedPublisher.open(admin)
    pub.close()
    assert not pub.is_open and not pub.is_connected
    with pytest.raises(BrokerConnectionLost):
        pub.publish("docex.ingress", "ingress", b"x", message_id="m1", timeout=60)


def test_bad_login_fails_at_open(admin: BrokerSettings) -> None:
    with pytest.raises(BrokerError) as info:
        ConfirmedPublisher.open(admin.for_login("docex-test-nobody", "wrong"))
    assert info.value.status == 403
    assert "wrong" not in str(info.value)
