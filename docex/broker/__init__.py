"""The AMQP seam: everything that touches RabbitMQ goes through this package."""

from docex.broker.consumer import Consumer, Delivery, RejectMessage
from docex.broker.errors import (
    BrokerConnectionLost,
    BrokerError,
    PublishFailed,
    PublishNacked,
    PublishTimeout,
    TopologyMismatch,
    Unroutable,
)
from docex.broker.management import Management, QueueInfo
from docex.broker.publisher import ConfirmedPublisher, PublishItem, connect
from docex.broker.settings import BrokerSettings, amqp_url

__all__ = [
    "BrokerConnectionLost",
    "BrokerError",
    "BrokerSettings",
    "ConfirmedPublisher",
    "Consumer",
    "Delivery",
    "Management",
    "PublishFailed",
    "PublishItem",
    "PublishNacked",
    "PublishTimeout",
    "QueueInfo",
    "RejectMessage",
    "TopologyMismatch",
    "Unroutable",
    "amqp_url",
    "connect",
]
