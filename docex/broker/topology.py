"""The hub's broker topology in one vhost: names, declarations and per-user permissions.

    docex.ingress (direct) --> hub.ingress   key=ingress   (quorum; competing hub workers)
                           --> hub.receipts  key=receipt   (receipts and notices: never
                                                            behind a backlog of documents)
    docex.deliver (direct) --> unit.<address>  key=<address>      (one inbox per unit)
                           --> link.<name>     key=link.<name>    (one per link/bridge)
    docex.dlx     (fanout) --> hub.dead                    (poison messages)

Work queues are quorum queues that dead-letter to docex.dlx once a message has been
returned x-delivery-limit times, so a message that crashes every consumer ends in hub.dead
instead of looping forever.
"""

from __future__ import annotations

import re
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.errors import BrokerError, TopologyMismatch

INGRESS_EXCHANGE = "docex.ingress"
DELIVER_EXCHANGE = "docex.deliver"
DEAD_LETTER_EXCHANGE = "docex.dlx"
INGRESS_QUEUE = "hub.ingress"
DEAD_QUEUE = "hub.dead"
INGRESS_ROUTING_KEY = "ingress"
RECEIPTS_QUEUE = "hub.receipts"
RECEIPTS_ROUTING_KEY = "receipt"
# Message types that travel in hub.receipts: small, and what a sender waits for.
_RECEIPT_TYPES = frozenset({"receipt", "notice"})
DEFAULT_DELIVERY_LIMIT = 10

# Addresses are dotted lowercase labels (qingyuan.yangshan.xxzx); link names one label.
_LABEL = r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?"
_ADDRESS_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LINK_RE = re.compile(_LABEL)

Permissions = tuple[str, str, str]
"""(configure, write, read) regexes as RabbitMQ takes them."""

NOTHING = "^$"


def _check_address(address: str) -> str:
    if not _ADDRESS_RE.fullmatch(address) or len(address) > 200:
        raise BrokerError(f"不合法的单位地址 (invalid unit address): {address!r}")
    return address


def _check_link(name: str) -> str:
    if not _LINK_RE.fullmatch(name) or len(name) > 100:
        raise BrokerError(f"不合法的链路名称 (invalid link name): {name!r}")
    return name


def unit_queue(address: str) -> str:
    return f"unit.{_check_address(address)}"


def link_queue(name: str) -> str:
    return f"link.{_check_link(name)}"


def link_routing_key(name: str) -> str:
    return f"link.{_check_link(name)}"


def ingress_routing_key(message_type: str | None) -> str:
    """The key a message is published to docex.ingress with: receipts and notices go to
    their own queue, so that a backlog of documents never holds them up."""
    return RECEIPTS_ROUTING_KEY if message_type in _RECEIPT_TYPES else INGRESS_ROUTING_KEY


def work_queue_arguments(delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict[str, Any]:
    if delivery_limit < 1:
        raise BrokerError(f"delivery_limit must be >= 1, got {delivery_limit}")
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-delivery-limit": delivery_limit,
    }


def _exact(name: str) -> str:
    return f"^{re.escape(name)}$"


def unit_permissions(address: str) -> Permissions:
    """A unit may publish to docex.ingress and read its own inbox; it configures nothing."""
    return (NOTHING, _exact(INGRESS_EXCHANGE), _exact(unit_queue(address)))


def link_permissions(name: str) -> Permissions:
    """A bridge publishes into this hub's ingress and reads its own link queue."""
    return (NOTHING, _exact(INGRESS_EXCHANGE), _exact(link_queue(name)))


def hub_permissions() -> Permissions:
    """The hub owns the topology: declare, publish and consume every docex name."""
    names = r"^(docex|hub|unit|link)\..*$"
    return (names, names, names)


def _declare(action: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:
            raise TopologyMismatch(
                f"{action}: 已存在但参数不同 (exists with other arguments): {exc.reply_text}",
                status=exc.reply_code,
            ) from None
        raise BrokerError(f"{action}: {exc.reply_text}", status=exc.reply_code) from None


def declare_hub_topology(
    channel: BlockingChannel, delivery_limit: int = DEFAULT_DELIVERY_LIMIT
) -> None:
    """Declare exchanges, hub.ingress and hub.dead. Idempotent with the same arguments.

    A 406 from RabbitMQ closes the channel: open a new one after TopologyMismatch.
    """
    ex = channel.exchange_declare
    for name, kind in (
        (INGRESS_EXCHANGE, "direct"),
        (DELIVER_EXCHANGE, "direct"),
        (DEAD_LETTER_EXCHANGE, "fanout"),
    ):
        _declare(f"exchange {name}", ex, exchange=name, exchange_type=kind, durable=True)
    # The dead queue has no dead-letter exchange of its own: nothing loops back.
    _declare(
        f"queue {DEAD_QUEUE}",
        channel.queue_declare,
        queue=DEAD_QUEUE,
        durable=True,
        arguments={"x-queue-type": "quorum"},
    )
    channel.queue_bind(DEAD_QUEUE, DEAD_LETTER_EXCHANGE, routing_key="")
    _declare_work_queue(
        channel, INGRESS_QUEUE, INGRESS_EXCHANGE, INGRESS_ROUTING_KEY, delivery_limit
    )
    _declare_work_queue(
        channel, RECEIPTS_QUEUE, INGRESS_EXCHANGE, RECEIPTS_ROUTING_KEY, delivery_limit
    )


def declare_unit_queue(
    channel: BlockingChannel, address: str, delivery_limit: int = DEFAULT_DELIVERY_LIMIT
) -> str:
    """Declare and bind the inbox of one unit; returns the queue name."""
    queue = unit_queue(address)
    _declare_work_queue(channel, queue, DELIVER_EXCHANGE, address, delivery_limit)
    return queue


def declare_link_queue(
    channel: BlockingChannel, name: str, delivery_limit: int = DEFAULT_DELIVERY_LIMIT
) -> str:
    """Declare and bind the outbound queue of one link; returns the queue name."""
    queue = link_queue(name)
    _declare_work_queue(channel, queue, DELIVER_EXCHANGE, link_routing_key(name), delivery_limit)
    return queue


def _declare_work_queue(
    channel: BlockingChannel, queue: str, exchange: str, routing_key: str, delivery_limit: int
) -> None:
    _declare(
        f"queue {queue}",
        channel.queue_declare,
        queue=queue,
        durable=True,
        arguments=work_queue_arguments(delivery_limit),
    )
    channel.queue_bind(queue, exchange, routing_key=routing_key)
