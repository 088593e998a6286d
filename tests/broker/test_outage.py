"""A dependency that is down is an outage, not a poison message: the delivery is held and
retried, consuming pauses, nothing is dead-lettered, and it resumes by itself."""

import errno
import sqlite3
import threading

import psycopg
import pytest
import sqlalchemy.exc
from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.consumer import Consumer, Delivery
from docex.broker.outage import classify
from docex.broker.settings import BrokerSettings
from docex.broker.topology import DEAD_QUEUE, declare_unit_queue, unit_queue

from .support import ready_count, wait_for
from .test_consumer import A, put, running


def test_classify_names_the_dependency_that_is_down() -> None:
    assert classify(OSError(errno.ENOSPC, "No space left on device")) == "disk"
    assert classify(sqlite3.OperationalError("database or disk is full")) == "disk"
    assert classify(sqlite3.OperationalError("database is locked")) == "database"
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))
    assert classify(wrapped) == "database"
    try:
        try:
            raise OSError(errno.EIO, "I/O error")
        except OSError as inner:
            raise RuntimeError("could not write the inbox") from inner
    except RuntimeError as outer:
        assert classify(outer) == "disk"


def test_classify_leaves_broken_messages_to_the_dead_letter_limit() -> None:
    assert classify(ValueError("cannot parse")) is None
    assert classify(OSError(errno.ENOENT, "No such file")) is None
    schema_bug = sqlalchemy.exc.OperationalError("SELECT x", {}, sqlite3.OperationalError("no such column: x"))
    assert classify(schema_bug) is None


@pytest.mark.rabbitmq
def test_outage_holds_deliveries_pauses_and_resumes_without_dead_letters(
    admin: BrokerSettings, channel: BlockingChannel
) -> None:
    declare_unit_queue(channel, A, delivery_limit=2)  # two failed tries would dead-letter a poison message
    disk_full = threading.Event()
    disk_full.set()
    lock = threading.Lock()
    tries: list[Delivery] = []
    done: list[str] = []

    def write(d: Delivery) -> None:
        with lock:
            tries.append(d)
        if disk_full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        with lock:
            done.append(d.message_id or "")

    consumer = running(Consumer(admin, unit_queue(A), write, workers=2, outage_initial=0.02, outage_max=0.05))
    try:
        ids = put(channel, A, 5)
        wait_for(lambda: consumer.outage == "disk", what="the outage noticed")
        wait_for(lambda: len(tries) >= 12, what="retries well past the dead-letter limit")
        with lock:
            started = {d.message_id for d in tries}
        assert len(started) <= 2  # the other workers started nothing new: consuming paused
        assert ready_count(channel, DEAD_QUEUE) == 0
        disk_full.clear()  # space is back
        wait_for(lambda: consumer.handled == 5, what="all handled after the outage")
        assert consumer.outage is None and consumer.outages == 1
    finally:
        consumer.stop()
    assert sorted(done) == sorted(ids)  # each once
    assert not any(d.redelivered for d in tries)  # held, never returned to the queue
    assert consumer.failed == 0
    assert ready_count(channel, DEAD_QUEUE) == 0
    assert ready_count(channel, unit_queue(A)) == 0
