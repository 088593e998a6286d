"""Named errors of the broker seam: callers catch these, never pika or requests internals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docex.broker.publisher import PublishItem


class BrokerError(Exception):
    """Something went wrong talking to RabbitMQ; `status` is the HTTP status when known."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TopologyMismatch(BrokerError):
    """A queue or exchange exists with other arguments (RabbitMQ PRECONDITION_FAILED)."""


class BrokerConnectionLost(BrokerError):
    """The AMQP connection closed before the broker confirmed; the outcome is unknown."""


class PublishTimeout(BrokerError):
    """The broker did not confirm within the timeout; the outcome is unknown."""


class PublishFailed(BrokerError):
    """Some messages of a publish were not accepted; `nacked` and `unroutable` say which."""

    def __init__(
        self,
        message: str,
        *,
        nacked: Sequence[PublishItem] = (),
        unroutable: Sequence[PublishItem] = (),
    ) -> None:
        super().__init__(message)
        self.nacked = list(nacked)
        self.unroutable = list(unroutable)


class PublishNacked(PublishFailed):
    """The broker refused to take responsibility for a message (basic.nack)."""


class Unroutable(PublishFailed):
    """A mandatory message matched no queue (basic.return): e.g. the recipient queue is missing."""
