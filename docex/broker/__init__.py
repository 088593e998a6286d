"""The AMQP seam: everything that touches RabbitMQ goes through this package."""

from typing import TYPE_CHECKING, Any

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
from docex.broker.publisher import ConfirmedPublisher, PublishItem, connect
from docex.broker.settings import BrokerSettings, amqp_url

if TYPE_CHECKING:
    from docex.broker.management import Management, QueueInfo


def __getattr__(name: str) -> Any:
    # The management API client (and `requests` under it, ~16 MB) is loaded when first
    # used: an agent never needs it, and an idle agent's memory is counted (issue 16).
    if name in ("Management", "QueueInfo"):
        from docex.broker import management

        return getattr(management, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
