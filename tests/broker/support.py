"""Helpers for broker tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.management import Management


def ready_count(channel: BlockingChannel, queue: str) -> int:
    """Messages ready in a queue, straight from the broker (no statistics lag)."""
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def force_close(management: Management, user: str) -> None:
    """Kill a user's connections the way an operator or a broker restart would."""
    management.close_user_connections(user, "docex test: simulated outage")
