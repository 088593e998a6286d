import re

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.errors import BrokerError, TopologyMismatch
from docex.broker.management import Management
from docex.broker.settings import BrokerSettings
from docex.broker.topology import (
    DEAD_QUEUE,
    INGRESS_QUEUE,
    RECEIPTS_QUEUE,
    declare_hub_topology,
    declare_link_queue,
    declare_unit_queue,
    ingress_routing_key,
    link_permissions,
    link_queue,
    unit_permissions,
    unit_queue,
)

from .support import ready_count

XXZX = "qingyuan.yangshan.xxzx"


def test_queue_names() -> None:
    assert unit_queue(XXZX) == "unit.qingyuan.yangshan.xxzx"
    assert link_queue("parent") == "link.parent"


@pytest.mark.parametrize("bad", ["", "Qingyuan", "a..b", "a.b.", "a b", "a.*", "单位", "a/b", "-a"])
def test_bad_names_refused(bad: str) -> None:
    with pytest.raises(BrokerError):
        unit_queue(bad)
    with pytest.raises(BrokerError):
        link_queue(bad)


def test_unit_permissions_are_exact() -> None:
    configure, write, read = unit_permissions(XXZX)
    assert configure == "^$"
    assert re.fullmatch(write, "docex.ingress")
    assert not re.fullmatch(write, "docexXingress")
    assert not re.fullmatch(write, "docex.deliver")
    assert not re.fullmatch(write, "")  # the default exchange
    assert re.fullmatch(read, "unit.qingyuan.yangshan.xxzx")
    # Dots are escaped: a look-alike address does not match, nor a longer one.
    assert not re.fullmatch(read, "unit.qingyuanXyangshan.xxzx")
    assert not re.search(read, "unit.qingyuan.yangshan.xxzx2")
    assert not re.search(read, "unit.qingyuan.yangshan.xxzx.sub")


def test_link_permissions() -> None:
    configure, write, read = link_permissions("parent")
    assert (configure, write) == ("^$", r"^docex\.ingress$")
    assert re.fullmatch(read, "link.parent") and not re.search(read, "link.parentx")


@pytest.mark.rabbitmq
def test_topology_declares_and_is_idempotent(
    channel: BlockingChannel, management: Management, vhost: str
) -> None:
    declare_hub_topology(channel)  # second time: same arguments, no error
    for _ in range(2):
        assert declare_unit_queue(channel, XXZX) == "unit.qingyuan.yangshan.xxzx"
        assert declare_link_queue(channel, "parent") == "link.parent"
    queues = {q.name: q for q in management.list_queues(vhost)}
    assert set(queues) == {INGRESS_QUEUE, RECEIPTS_QUEUE, DEAD_QUEUE, unit_queue(XXZX), "link.parent"}
    for name in (INGRESS_QUEUE, RECEIPTS_QUEUE, unit_queue(XXZX), "link.parent"):
        assert queues[name].type == "quorum"
        assert queues[name].arguments["x-dead-letter-exchange"] == "docex.dlx"
        assert queues[name].arguments["x-delivery-limit"] == 10
    assert "x-dead-letter-exchange" not in queues[DEAD_QUEUE].arguments

    # Routing: ingress, a unit address, a link key, each to its own queue.
    channel.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    channel.basic_publish("docex.ingress", "ingress", b"1", props, mandatory=True)
    channel.basic_publish("docex.ingress", ingress_routing_key("receipt"), b"1r", props, mandatory=True)
    channel.basic_publish("docex.deliver", XXZX, b"2", props, mandatory=True)
    channel.basic_publish("docex.deliver", "link.parent", b"3", props, mandatory=True)
    channel.basic_publish("docex.dlx", "anything", b"4", props, mandatory=True)
    for name in (INGRESS_QUEUE, RECEIPTS_QUEUE, unit_queue(XXZX), "link.parent", DEAD_QUEUE):
        assert ready_count(channel, name) == 1


@pytest.mark.rabbitmq
def test_redeclare_with_other_limit_is_a_named_error(admin: BrokerSettings) -> None:
    conn = pika.BlockingConnection(admin.parameters())
    try:
        declare_hub_topology(conn.channel(), delivery_limit=10)
        with pytest.raises(TopologyMismatch) as info:
            declare_hub_topology(conn.channel(), delivery_limit=3)
        assert info.value.status == 406
    finally:
        conn.close()
