"""Consuming one queue: handler in worker threads, ack only after it returned, self-healing.

One connection thread owns the pika connection and only does I/O: it receives deliveries,
hands them to a small worker pool, sends acks and the publishes workers ask for. Handlers
(crypto, database) run in the workers, so heartbeats never starve. Workers marshal their
outcome back with `add_callback_threadsafe`; completions are coalesced, and a run of
finished deliveries is acked with one `basic_ack(multiple=True)`.

Outcomes: handler returns -> ack; raises RejectMessage -> nack without requeue (dead-
lettered to docex.dlx at once); raises anything else -> nack with requeue, so the quorum
queue's x-delivery-limit eventually dead-letters a poison message.

Batches (`batch=`, `batch_size=`): a worker takes what is already waiting, up to
`batch_size` deliveries (never waiting for more: alone, one goes alone), and hands them to
the batch handler at once, so a store can write several in one transaction. The batch
handler returns -> all are acked; raises -> each delivery is tried again on its own with
`handler` (idempotent on message id), so one poison delivery neither refuses nor loses the
others of its batch.

Outages are not poison: when the failure says a dependency is down (`outage.classify`: the
database, the disk), the worker keeps the delivery unacknowledged (so it does not count
toward the dead-letter limit), retries it with capped backoff, and the other workers start
nothing new until it succeeds: consuming pauses (prefetch bounds what is held) and resumes
by itself. One log line when an outage starts, one when it ends.

When the connection drops, the consumer reconnects with capped exponential backoff.
Deliveries of the lost connection are never acked on the new one (delivery tags are per
channel); RabbitMQ redelivers them, and consumers are idempotent on message id.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from docex.broker import outage as outages
from docex.broker.errors import BrokerConnectionLost, BrokerError
from docex.broker.publisher import (
    DEFAULT_CONFIRM_TIMEOUT,
    ConfirmedPublisher,
    PublishItem,
    _Batch,
    _describe,
    connect,
    wake,
)
from docex.broker.settings import BrokerSettings
from docex.protocols.logsafe import loggable

log = logging.getLogger(__name__)


class RejectMessage(Exception):  # noqa: N818 - it is a request, not an error
    """Raise from a handler to dead-letter the delivery now instead of retrying it."""


@dataclass(eq=False)
class Delivery:
    body: bytes
    message_id: str | None
    headers: dict[str, Any]
    user_id: str | None
    redelivered: bool
    delivery_tag: int
    properties: pika.BasicProperties
    exchange: str = ""
    routing_key: str = ""
    # Confirmed publishing on the consumer's own connection (blocks until confirmed).
    publisher: ConfirmedPublisher | None = field(default=None, repr=False, compare=False)
    forwards: list[PublishItem] = field(default_factory=list, repr=False)
    forward_via: ConfirmedPublisher | None = field(default=None, repr=False)

    @property
    def delivery_count(self) -> int:
        """Earlier failed deliveries of this message (quorum queues count them)."""
        return int(self.headers.get("x-delivery-count") or 0)

    def forward(self, *items: PublishItem, via: ConfirmedPublisher | None = None) -> None:
        """Publish these after the handler returns; ack this delivery once all confirmed.

        `via`: another publisher (e.g. `ConfirmedPublisher.open` on the other side of a
        bridge); default: the consumer's own connection. The handler does not wait for
        the broker, so a few workers keep many messages in flight. If any item is
        nacked, unroutable or lost, this delivery is requeued (in the end dead-
        lettered): call `publisher.publish` instead when the handler must react itself.
        """
        if self.forwards and via is not self.forward_via:
            raise ValueError("all forwards of one delivery go through the same publisher")
        self.forward_via = via
        self.forwards.extend(items)


Handler = Callable[[Delivery], None]
BatchHandler = Callable[[list[Delivery]], None]


class _Outcome(Enum):
    ACK = "ack"
    REQUEUE = "requeue"
    REJECT = "reject"


_STOP = object()
_OUTAGE_WORDS = {"database": "数据库", "disk": "磁盘", "broker": "消息服务器 RabbitMQ"}


class Consumer:
    """Run `handler` for every message of `queue`, until `stop()`.

    `run()` blocks (use it in a service's main thread); `start()` runs it in a thread.
    `on_connected(channel)` runs after each (re)connect, before consuming: declare the
    topology there if this login may configure. `Delivery.publisher` publishes with
    confirms on the same connection, so a forwarder is: publish, return (-> ack).
    """

    def __init__(
        self,
        settings: BrokerSettings,
        queue_name: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
        workers: int = 4,
        name: str | None = None,
        on_connected: Callable[[BlockingChannel], None] | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        stop_timeout: float = 30.0,
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
        outage: outages.Classifier = outages.classify,
        outage_initial: float = 0.5,
        outage_max: float = 15.0,
        batch: BatchHandler | None = None,
        batch_size: int = 16,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.settings = settings
        self.queue = queue_name
        self.handler = handler
        self.batch_handler = batch
        self.batch_size = max(1, batch_size) if batch is not None else 1
        self.prefetch = settings.prefetch if prefetch is None else prefetch
        self.workers = workers
        self.name = name or f"docex:{queue_name}:{uuid.uuid4().hex[:8]}"
        self.on_connected = on_connected
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.stop_timeout = stop_timeout
        self.confirm_timeout = confirm_timeout
        self.classify_outage = outage
        self.outage_initial = outage_initial
        self.outage_max = outage_max

        # While a dependency is down: what it is, since when (monotonic), and the gate that
        # holds back new deliveries. Read by health checks and metrics.
        self.outage: str | None = None
        self.outage_since: float | None = None
        self.outages = 0
        self._healthy = threading.Event()
        self._healthy.set()
        self._outage_lock = threading.Lock()

        # Counters for metrics and tests (written by the connection thread only).
        self.handled = 0
        self.failed = 0
        self.sessions = 0
        self.batches = 0  # batch handler calls that succeeded (with more than one delivery)
        self.batch_fallbacks = 0  # batches retried one by one

        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._completions: list[tuple[int, int, _Outcome]] = []
        self._flush_scheduled = False
        self._generation = 0
        self._conn: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._publisher: ConfirmedPublisher | None = None
        # delivery tag -> finished (handler done, ack pending); in delivery order.
        self._outstanding: OrderedDict[int, bool] = OrderedDict()
        self._was_consuming = False

    # -- control --------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Run in a background thread; returns at once (see wait_ready)."""
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self._thread

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once connected and consuming."""
        return self._ready.wait(timeout)

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    @property
    def queued(self) -> int:
        """Deliveries received and not yet taken by a worker (what the next batch can take)."""
        return self._work.qsize()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def publisher(self) -> ConfirmedPublisher:
        """The confirmed publisher of the current connection (for use from handlers)."""
        if self._publisher is None:
            raise BrokerError("消费者尚未连接 (consumer not connected)")
        return self._publisher

    def stop(self, timeout: float | None = None) -> None:
        """Stop consuming; handlers already running finish and are acked. Thread-safe.

        Deliveries not yet started go back to the queue. Joins the background thread
        when start() was used. Safe to call from a SIGTERM handler.
        """
        self._stopping.set()
        wake(self._conn)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.stop_timeout + 5 if timeout is None else timeout)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        self._start_workers()
        delay = self.reconnect_initial
        try:
            while not self._stopping.is_set():
                try:
                    self._session()
                except Exception as exc:  # noqa: BLE001 - a service must outlive broker trouble
                    if self._stopping.is_set():
                        break
                    if self._was_consuming:
                        delay = self.reconnect_initial  # it worked until now: retry soon
                    if isinstance(exc, pika.exceptions.AMQPError | OSError | BrokerError):
                        log.warning(
                            "消费者 %s: RabbitMQ 连接中断 (%s); %.1f 秒后重连 (reconnecting)",
                            self.queue,
                            _describe(exc),
                            delay,
                        )
                    else:
                        log.exception("消费者 %s: 意外错误; %.1f 秒后重连", self.queue, delay)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self.reconnect_max)
        finally:
            self._stop_workers()

    def _session(self) -> None:
        self._was_consuming = False
        conn = connect(self.settings, self.name)
        try:
            channel = conn.channel()
            channel.basic_qos(prefetch_count=self.prefetch)
            if self.on_connected is not None:
                self.on_connected(channel)
            publisher = ConfirmedPublisher(conn, confirm_timeout=self.confirm_timeout)
            with self._lock:
                self._generation += 1
                self._completions.clear()
                self._flush_scheduled = False
            self._outstanding.clear()
            self._conn, self._channel, self._publisher = conn, channel, publisher
            try:
                channel.basic_consume(self.queue, self._on_message)
            except pika.exceptions.ChannelClosedByBroker as exc:
                raise BrokerError(
                    f"无法消费队列 {self.queue} (cannot consume): {_describe(exc)}",
                    status=exc.reply_code,
                ) from None
            self.sessions += 1
            self._was_consuming = True
            self._ready.set()
            log.info("消费者 %s 已连接 (consuming), prefetch=%d", self.queue, self.prefetch)
            while not self._stopping.is_set():
                conn.process_data_events(time_limit=1.0)
                if not channel.consumer_tags:
                    raise BrokerError(f"RabbitMQ 取消了对 {self.queue} 的消费 (consumer cancelled)")
            self._finish(conn, channel)
        finally:
            self._ready.clear()
            with self._lock:
                self._generation += 1  # whatever is still queued or running is now stale
            if self._publisher is not None:
                self._publisher._abort(
                    BrokerConnectionLost("消费者连接已关闭 (consumer connection closed)")
                )
            self._publisher = None
            self._channel = None
            self._conn = None
            if conn.is_open:
                try:
                    conn.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass

    def _finish(self, conn: BlockingConnection, channel: BlockingChannel) -> None:
        """Graceful stop: no new deliveries, let running handlers finish and ack them."""
        try:
            channel.basic_cancel(self._consumer_tag_of(channel))
        except (pika.exceptions.AMQPError, OSError):
            return
        deadline = time.monotonic() + self.stop_timeout
        while self._outstanding and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
            self._flush()
        log.info("消费者 %s 已停止 (stopped)", self.queue)

    @staticmethod
    def _consumer_tag_of(channel: BlockingChannel) -> str:
        return next(iter(channel.consumer_tags), "")

    # -- connection thread ----------------------------------------------------------------

    def _on_message(
        self,
        _channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        delivery = Delivery(
            body=body,
            message_id=properties.message_id,
            headers=dict(properties.headers or {}),
            user_id=properties.user_id,
            redelivered=bool(method.redelivered),
            delivery_tag=method.delivery_tag,
            properties=properties,
            exchange=method.exchange,
            routing_key=method.routing_key,
            publisher=self._publisher,
        )
        self._outstanding[method.delivery_tag] = False
        self._work.put((self._generation, delivery))

    def _flush(self) -> None:
        """Settle finished deliveries: nacks one by one, acks as few frames as possible."""
        with self._lock:
            self._flush_scheduled = False
            items = self._completions
            self._completions = []
        channel = self._channel
        if channel is None:
            return
        generation = self._generation
        outstanding = self._outstanding
        for gen, tag, outcome in items:
            if gen != generation or tag not in outstanding:
                continue  # from a lost connection: RabbitMQ already requeued it
            if outcome is _Outcome.ACK:
                outstanding[tag] = True
                self.handled += 1
            else:
                del outstanding[tag]
                self.failed += 1
                channel.basic_nack(tag, requeue=outcome is _Outcome.REQUEUE)
        # multiple=True acks every unacked tag up to `last`: only a finished prefix.
        last = None
        while outstanding:
            tag = next(iter(outstanding))
            if not outstanding[tag]:
                break
            outstanding.popitem(last=False)
            last = tag
        if last is not None:
            channel.basic_ack(last, multiple=True)
        # Finished out of order behind a slow handler: ack now, keep prefetch slots free.
        for tag in [t for t, done in outstanding.items() if done]:
            del outstanding[tag]
            channel.basic_ack(tag)

    def _forward(self, generation: int, delivery: Delivery) -> None:
        """Worker thread: queue the handler's forwards; the confirm settles the delivery."""
        tag, items = delivery.delivery_tag, delivery.forwards

        def confirmed(batch: _Batch) -> None:
            if batch.ok:
                self._complete(generation, tag, _Outcome.ACK)
                return
            if not isinstance(batch.error, BrokerConnectionLost):  # that is logged once
                log.warning(
                    "转发消息 %s 未被确认, 退回队列重试 (forward failed): %s",
                    loggable(delivery.message_id),
                    batch.error.message
                    if batch.error
                    else f"{len(batch.nacked)} nacked, {len(batch.returned)} unroutable",
                )
            self._complete(generation, tag, _Outcome.REQUEUE)

        publisher = delivery.forward_via or delivery.publisher
        batch = _Batch(list(items), owner=False, on_done=confirmed)
        try:
            if publisher is None:
                raise BrokerConnectionLost("消费者未连接 (consumer not connected)")
            publisher._submit(batch)
        except BrokerError as exc:
            batch.fail(exc)

    # -- workers --------------------------------------------------------------------------

    def _start_workers(self) -> None:
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"{self.name}-w{i}", daemon=True)
            for i in range(self.workers)
        ]
        for worker in self._workers:
            worker.start()

    def _stop_workers(self) -> None:
        for _ in self._workers:
            self._work.put(_STOP)
        for worker in self._workers:
            worker.join(self.stop_timeout)
        self._workers = []

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            generation, delivery = item
            if generation != self._generation:
                continue  # its connection is gone; RabbitMQ redelivers it
            if self.batch_size > 1:
                more, stop = self._drain(generation)
                if more:
                    self._run_batch(generation, [delivery, *more])
                    if stop:
                        return
                    continue
                if stop:
                    self._run_one(generation, delivery)
                    return
            self._run_one(generation, delivery)

    def _drain(self, generation: int) -> tuple[list[Delivery], bool]:
        """What else already waits (up to batch_size - 1), without waiting for more; and
        whether a stop request was taken on the way (the caller honours it afterwards)."""
        more: list[Delivery] = []
        while len(more) < self.batch_size - 1:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return more, True
            gen, delivery = item
            if gen == generation:
                more.append(delivery)
        return more, False

    def _run_one(self, generation: int, delivery: Delivery) -> None:
        # Not started before stop(): back to the queue.
        outcome = _Outcome.REQUEUE if self._stopping.is_set() else self._handle(delivery)
        if outcome is _Outcome.ACK and delivery.forwards:
            self._forward(generation, delivery)
        else:
            self._complete(generation, delivery.delivery_tag, outcome)

    def _run_batch(self, generation: int, deliveries: list[Delivery]) -> None:
        """The batch handler over all of them; acked together only when it returned. If it
        raised, each is tried alone (a redelivery in effect: handlers are idempotent)."""
        assert self.batch_handler is not None
        if self._stopping.is_set() or not self._wait_healthy():
            for delivery in deliveries:
                self._complete(generation, delivery.delivery_tag, _Outcome.REQUEUE)
            return
        try:
            self.batch_handler(deliveries)
        except BrokerConnectionLost:
            log.debug("batch handler lost its connection", exc_info=True)
            for delivery in deliveries:
                self._complete(generation, delivery.delivery_tag, _Outcome.REQUEUE)
            return
        except Exception as exc:  # noqa: BLE001 - one bad delivery must not sink the batch
            self.batch_fallbacks += 1
            log.info("批量处理 %d 条失败, 逐条重试 (batch of %d failed, retrying one by one): %s",
                     len(deliveries), len(deliveries), _describe(exc))
            log.debug("batch traceback", exc_info=True)
            for delivery in deliveries:
                self._run_one(generation, delivery)
            return
        self._outage_ends()
        self.batches += 1
        for delivery in deliveries:
            if delivery.forwards:
                self._forward(generation, delivery)
            else:
                self._complete(generation, delivery.delivery_tag, _Outcome.ACK)

    def _wait_healthy(self) -> bool:
        """While another worker waits out an outage, start nothing new. False: stopping."""
        while not self._healthy.wait(0.5):
            if self._stopping.is_set():
                return False
        return True

    def _handle(self, delivery: Delivery) -> _Outcome:
        if not self._wait_healthy():
            return _Outcome.REQUEUE
        delay = self.outage_initial
        while True:
            delivery.forwards.clear()  # a retry publishes what the successful try asks, once
            delivery.forward_via = None
            try:
                self.handler(delivery)
            except RejectMessage as exc:
                log.warning("消息 %s 被拒绝, 转入死信 (rejected): %s", loggable(delivery.message_id), loggable(exc, 500))
                return _Outcome.REJECT
            except BrokerConnectionLost:
                # Its connection dropped mid-publish; that is logged once where it happened.
                log.debug("handler lost its connection", exc_info=True)
                return _Outcome.REQUEUE
            except Exception as exc:  # noqa: BLE001 - any handler failure means "try again later"
                what = self.classify_outage(exc)
                if what is None:
                    log.warning(
                        "处理消息 %s 失败, 退回队列重试 (requeued, delivery %d): %s",
                        loggable(delivery.message_id),
                        delivery.delivery_count + 1,
                        loggable(_describe(exc), 500),
                    )
                    log.debug("handler traceback", exc_info=True)
                    return _Outcome.REQUEUE
                # A dependency is down: hold this delivery (unacked, so not counted toward
                # the dead-letter limit) and try it again once the outage may be over.
                self._outage_begins(what, exc)
                if self._stopping.wait(delay):
                    return _Outcome.REQUEUE
                delay = min(delay * 2, self.outage_max)
                continue
            self._outage_ends()
            return _Outcome.ACK

    def _outage_begins(self, what: str, exc: BaseException) -> None:
        with self._outage_lock:
            if self.outage is not None:
                return
            self.outage, self.outage_since = what, time.monotonic()
            self.outages += 1
            self._healthy.clear()
        log.error(
            "消费者 %s: %s 不可用, 暂停消费, 消息保留待重试 (%s unavailable; consuming paused, "
            "nothing is dead-lettered): %s",
            self.queue,
            _OUTAGE_WORDS.get(what, what),
            what,
            _describe(exc),
        )

    def _outage_ends(self) -> None:
        if self.outage is None:
            return
        with self._outage_lock:
            if self.outage is None:
                return
            what, since = self.outage, self.outage_since or time.monotonic()
            self.outage, self.outage_since = None, None
            self._healthy.set()
        log.warning(
            "消费者 %s: %s 已恢复, 继续消费 (%s back after %.1f s)",
            self.queue,
            _OUTAGE_WORDS.get(what, what),
            what,
            time.monotonic() - since,
        )

    def _complete(
        self,
        generation: int,
        tag: int,
        outcome: _Outcome,
    ) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._completions.append((generation, tag, outcome))
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
            conn = self._conn
        if conn is None:
            return
        try:
            conn.add_callback_threadsafe(self._flush)
        except (pika.exceptions.AMQPError, OSError):
            pass  # connection closing: the message is redelivered on the next one

