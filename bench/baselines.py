"""Raw RabbitMQ baselines: what the broker and pika alone do on this machine (no docex code).

Every measurement runs in its own fresh vhost. Each AMQP role runs in its own process (the
GIL would otherwise serialise them) on a pika ``SelectConnection``, because the blocking
adapter waits for every publisher confirm in turn. How each role stays fair and fast:

- publishers pipeline: they keep a window of unconfirmed messages (or unreceipted
  documents) in flight and act on the broker's (often ``multiple``) confirms as they come;
- a message taken from a queue is acked only after what it caused is confirmed; acks that
  become due in one pass of the I/O loop go out as one ``multiple=True`` ack (the effect is
  still durable before its ack; only the frame count drops);
- pika sends every frame with its own ``send()`` and reads 4 KB per ``recv()``: in the role
  processes only, buffered frames are joined before sending and reads take 32 KB;
- messages are persistent (delivery_mode 2) on durable quorum queues, like docex's
  (docex.broker.topology); the exchanges are direct, named as docex names them.

``measured(name, quick)`` memoises the standard baselines in this process, so every suite
of one ``python -m bench`` run compares against the same numbers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections.abc import Callable
from typing import Any

import pika
from pika.spec import Basic

from bench.harness import AMQP_HOST, AMQP_PORT, GUEST, Result, percentiles, temp_vhost

INGRESS_X = "docex.ingress"
DELIVER_X = "docex.deliver"
INGRESS_Q = "hub.ingress"
SENDER_Q = "unit.sender"
RAW_Q = "raw.q"
PERSISTENT = 2

TITLE = "原始基线 raw baselines: RabbitMQ + pika, no docex code"


class BenchError(RuntimeError):
    """A baseline could not run (broker unreachable, a role died, a message was nacked)."""


def _params(vhost: str) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=AMQP_HOST,
        port=AMQP_PORT,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(*GUEST),
        heartbeat=120,
        connection_attempts=3,
    )


def _declare(
    vhost: str, queues: list[str], exchanges: dict[str, list[str]], queue_type: str = "quorum"
) -> None:
    """Durable queues (quorum, like docex's); ``exchanges`` maps a direct exchange to the
    queues bound to it (binding key = queue name)."""
    conn = pika.BlockingConnection(_params(vhost))
    try:
        ch = conn.channel()
        for q in queues:
            ch.queue_declare(q, durable=True, arguments={"x-queue-type": queue_type})
        for x, bound in exchanges.items():
            ch.exchange_declare(x, "direct", durable=True)
            for q in bound:
                ch.queue_bind(q, x, routing_key=q)
    finally:
        conn.close()


# -- one AMQP role per process ---------------------------------------------------------------


class _Node:
    """A SelectConnection with one channel in confirm mode. Subclasses implement ``start``."""

    prefetch = 0

    def __init__(self, vhost: str, ctl: dict[str, Any], args: dict[str, Any]) -> None:
        self.ctl = ctl
        self.args = args
        self.seq = 0
        self.pending: dict[int, Callable[[], None]] = {}
        self.ch: Any = None
        # Delivery tags on a channel run 1, 2, 3...: ``ack_next`` is the lowest not yet acked.
        self.ack_next = 1
        self.ack_done: set[int] = set()
        self.ack_scheduled = False
        self.coalesce = bool(args.get("coalesce_acks", True))
        self.prefetch = int(args.get("prefetch", self.prefetch))
        self.conn: Any = pika.SelectConnection(
            _params(vhost),
            on_open_callback=self._opened,
            on_open_error_callback=lambda _c, err: self.fail(f"connect: {err!r}"),
            on_close_callback=self._closed,
        )

    def _closed(self, _conn: Any, _reason: Any) -> None:
        self.conn.ioloop.stop()

    def run(self) -> None:
        self.conn.ioloop.start()

    def _opened(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._channel_open)

    def _channel_open(self, ch: Any) -> None:
        self.ch = ch
        ch.confirm_delivery(
            self._on_confirm,
            callback=lambda _f: ch.basic_qos(
                prefetch_count=self.prefetch, callback=lambda _f: self._started()
            ),
        )

    def _started(self) -> None:
        self.start()
        self.conn.ioloop.call_later(0.05, self._poll_stop)
        self.ctl["ready"].put(type(self).__name__)

    def start(self) -> None:
        raise NotImplementedError

    def waiting_for_go(self, then: Callable[[], None]) -> bool:
        """True (and ``then`` retried shortly) until the parent releases every role."""
        if self.ctl["go"].is_set():
            return False
        self.conn.ioloop.call_later(0.001, then)
        return True

    def _poll_stop(self) -> None:
        if self.ctl["stop"].is_set():
            self.close()
        else:
            self.conn.ioloop.call_later(0.05, self._poll_stop)

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()

    def fail(self, why: str) -> None:
        self.ctl["results"].put(("error", f"{type(self).__name__}: {why}"))
        self.ctl["stop"].set()
        if self.conn.is_open:
            self.conn.close()
        else:
            self.conn.ioloop.stop()

    def report(self, data: dict[str, Any]) -> None:
        self.ctl["results"].put(("ok", data))

    # publish with confirms: ``done`` runs once the broker has the message safely
    def publish(
        self, exchange: str, key: str, body: bytes, props: Any, done: Callable[[], None]
    ) -> None:
        self.ch.basic_publish(exchange, key, body, props)
        self.seq += 1
        self.pending[self.seq] = done

    def _on_confirm(self, frame: Any) -> None:
        m = frame.method
        if isinstance(m, Basic.Nack):
            self.fail(f"broker nacked publish {m.delivery_tag}")
            return
        tag = m.delivery_tag
        pending = self.pending
        if not m.multiple:
            pending.pop(tag)()
            return
        due = []
        for k in pending:
            if k > tag:
                break
            due.append(k)
        for k in due:
            pending.pop(k)()

    # ack a consumed message once its effect is durable
    def ack(self, tag: int) -> None:
        if not self.coalesce:
            self.ch.basic_ack(tag)
            return
        self.ack_done.add(tag)
        if not self.ack_scheduled:
            self.ack_scheduled = True
            self.conn.ioloop.call_later(0, self._flush_acks)

    def _flush_acks(self) -> None:
        self.ack_scheduled = False
        n, done = self.ack_next, self.ack_done
        while n in done:
            done.remove(n)
            n += 1
        if n != self.ack_next:
            self.ch.basic_ack(n - 1, multiple=True)
            self.ack_next = n


class _RawPublisher(_Node):
    def start(self) -> None:
        self.n = int(self.args["n"])
        self.window = int(self.args.get("window", 1000))
        self.body = os.urandom(int(self.args["payload_size"]))
        self.props = pika.BasicProperties(delivery_mode=PERSISTENT)
        self.sent = self.confirmed = 0
        self.conn.ioloop.call_later(0, self._go)

    def _go(self) -> None:
        if self.waiting_for_go(self._go):
            return
        self.t0 = time.monotonic()
        for _ in range(min(self.window, self.n)):
            self._send()

    def _send(self) -> None:
        self.sent += 1
        self.publish("", RAW_Q, self.body, self.props, self._confirmed)

    def _confirmed(self) -> None:
        self.confirmed += 1
        if self.sent < self.n:
            self._send()
        elif self.confirmed == self.n:
            self.report({"role": "publisher", "t0": self.t0, "t1": time.monotonic()})


class _RawConsumer(_Node):
    prefetch = 1000

    def start(self) -> None:
        self.n = int(self.args["n"])
        self.got = 0
        self.ch.basic_consume(RAW_Q, self._on_message)

    def _on_message(self, _ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        self.got += 1
        self.ack(method.delivery_tag)
        if self.got == self.n:
            self.report({"role": "consumer", "t1": time.monotonic()})


class _Sender(_Node):
    """The sending unit: publishes documents, consumes their receipts. Phases: warm-up and
    max-rate with a window of unreceipted documents, then open-loop at a fixed rate for
    latency."""

    prefetch = 2000

    def start(self) -> None:
        a = self.args
        self.recipients = list(a["recipients"])
        self.body = os.urandom(int(a["payload_size"]))
        self.window = int(a.get("window", 1000))
        self.sent_at: dict[str, float] = {}
        self.left: dict[str, int] = {}
        self.next_id = 0
        self.ch.basic_consume(SENDER_Q, self._on_receipt)
        self.phases: list[tuple[str, int]] = [
            ("warmup", int(a["warmup"])),
            ("max", int(a["n"])),
            ("rate", int(a["latency_docs"])),
        ]
        self.conn.ioloop.call_later(0, self._go)

    def _go(self) -> None:
        if self.waiting_for_go(self._go):
            return
        self.out: dict[str, Any] = {"role": "sender"}
        self._next_phase()

    def _next_phase(self) -> None:
        while self.phases and self.phases[0][1] <= 0:
            self.phases.pop(0)
        if not self.phases:
            self.report(self.out)
            return
        self.phase, self.phase_n = self.phases.pop(0)
        self.phase_sent = self.phase_done = 0
        self.latencies: list[float] = []
        self.t0 = time.monotonic()
        if self.phase == "rate":
            max_rate = self.out["max_docs"] / (self.out["max_t1"] - self.out["max_t0"])
            self.rate = max_rate / 2
            self._tick()
        else:
            for _ in range(min(self.window, self.phase_n)):
                self._send_doc()

    def _send_doc(self) -> None:
        self.next_id += 1
        mid = f"d{self.next_id}"
        props = pika.BasicProperties(
            delivery_mode=PERSISTENT, message_id=mid, type="doc", reply_to=SENDER_Q
        )
        self.sent_at[mid] = time.monotonic()
        self.left[mid] = len(self.recipients)
        self.phase_sent += 1
        self.publish(INGRESS_X, INGRESS_Q, self.body, props, _noop)

    def _tick(self) -> None:
        due = int((time.monotonic() - self.t0) * self.rate) + 1
        while self.phase_sent < min(due, self.phase_n):
            self._send_doc()
        if self.phase_sent < self.phase_n:
            self.conn.ioloop.call_later(0.002, self._tick)

    def _on_receipt(self, _ch: Any, method: Any, props: Any, _body: bytes) -> None:
        mid = props.correlation_id
        self.ack(method.delivery_tag)
        left = self.left[mid] - 1
        if left:
            self.left[mid] = left
            return
        del self.left[mid]
        now = time.monotonic()
        self.latencies.append(now - self.sent_at.pop(mid))
        self.phase_done += 1
        if self.phase != "rate" and self.phase_sent < self.phase_n:
            self._send_doc()
        if self.phase_done == self.phase_n:
            if self.phase == "max":
                self.out.update(max_docs=self.phase_n, max_t0=self.t0, max_t1=now)
            elif self.phase == "rate":
                self.out.update(
                    rate_docs=self.phase_n,
                    rate_target=self.rate,
                    rate_seconds=now - self.t0,
                    latencies=self.latencies,
                )
            self._next_phase()


def _noop() -> None:
    pass


class _Hub(_Node):
    """The hub forwarder: copies a document to every recipient queue, a receipt to the
    sender's queue, and acks its input only once every copy is confirmed."""

    prefetch = 500

    def start(self) -> None:
        self.recipients = list(self.args["recipients"])
        self.ch.basic_consume(INGRESS_Q, self._on_message)

    def _on_message(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        tag = method.delivery_tag
        if props.type == "receipt":
            self.publish(DELIVER_X, props.reply_to, body, props, lambda: self.ack(tag))
            return
        left = [len(self.recipients)]

        def one_confirmed() -> None:
            left[0] -= 1
            if not left[0]:
                self.ack(tag)

        for r in self.recipients:
            self.publish(DELIVER_X, r, body, props, one_confirmed)


class _Recipient(_Node):
    """A receiving unit (or several): for each document, publishes a receipt to the ingress
    and acks the document once the receipt is confirmed."""

    prefetch = 500

    def start(self) -> None:
        self.receipt = os.urandom(512)  # about a signed receipt's size
        for q in self.args["queues"]:
            self.ch.basic_consume(q, self._on_message)

    def _on_message(self, _ch: Any, method: Any, props: Any, _body: bytes) -> None:
        tag = method.delivery_tag
        receipt_props = pika.BasicProperties(
            delivery_mode=PERSISTENT,
            message_id=f"{props.message_id}/{method.routing_key}",
            correlation_id=props.message_id,
            type="receipt",
            reply_to=props.reply_to,
        )
        self.publish(INGRESS_X, INGRESS_Q, self.receipt, receipt_props, lambda: self.ack(tag))


_ROLES: dict[str, type[_Node]] = {
    "raw_publisher": _RawPublisher,
    "raw_consumer": _RawConsumer,
    "sender": _Sender,
    "hub": _Hub,
    "recipient": _Recipient,
}


def _coalesce_pika_writes() -> None:
    """pika's async transport sends each buffered frame with its own send() call (three per
    message); join what is buffered first so one pass of the I/O loop is one syscall. Only in
    the bench's role processes."""
    from pika.adapters.utils import io_services_utils as ios

    base = ios._AsyncTransportBase
    original = base._produce
    if getattr(original, "_docex_bench", False):
        return

    def produce(self: Any) -> None:
        bufs = self._tx_buffers
        if len(bufs) > 1:
            joined = b"".join(bufs)
            bufs.clear()
            bufs.append(joined)
        original(self)

    produce._docex_bench = True  # type: ignore[attr-defined]
    base._produce = produce


def _role_main(role: str, vhost: str, ctl: dict[str, Any], args: dict[str, Any]) -> None:
    if args.get("coalesce_writes", True):
        _coalesce_pika_writes()
    if args.get("recv_bytes"):
        from pika.adapters.utils import io_services_utils as ios

        ios._AsyncTransportBase._MAX_RECV_BYTES = int(args["recv_bytes"])
    try:
        _ROLES[role](vhost, ctl, args).run()
    except Exception as exc:  # report, so the parent fails fast instead of timing out
        ctl["results"].put(("error", f"{role}: {exc!r}"))
        ctl["stop"].set()


def _run_roles(
    vhost: str, roles: list[tuple[str, dict[str, Any]]], want: int, timeout: float
) -> list[dict[str, Any]]:
    """Start one process per role, release them together once all are consuming, and return
    the first ``want`` reports."""
    mpc = mp.get_context("spawn")
    ctl: dict[str, Any] = {
        "ready": mpc.Queue(),
        "results": mpc.Queue(),
        "go": mpc.Event(),
        "stop": mpc.Event(),
    }
    procs = [
        mpc.Process(target=_role_main, args=(role, vhost, ctl, args), daemon=True)
        for role, args in roles
    ]
    for p in procs:
        p.start()
    reports: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        for _ in procs:
            while True:
                try:
                    ctl["ready"].get(timeout=0.5)
                    break
                except queue_mod.Empty:
                    _check(ctl, procs, deadline, "start")
        ctl["go"].set()
        deadline = time.monotonic() + timeout
        while len(reports) < want:
            try:
                status, data = ctl["results"].get(timeout=0.5)
            except queue_mod.Empty:
                _check(ctl, procs, deadline, "run")
                continue
            if status == "error":
                raise BenchError(data)
            reports.append(data)
    finally:
        ctl["stop"].set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    return reports


def _check(ctl: dict[str, Any], procs: list[Any], deadline: float, stage: str) -> None:
    try:
        status, data = ctl["results"].get_nowait()
    except queue_mod.Empty:
        pass
    else:
        if status == "error":
            raise BenchError(data)
        ctl["results"].put((status, data))
    if any(not p.is_alive() for p in procs):
        raise BenchError(f"a role process exited during {stage}")
    if time.monotonic() > deadline:
        raise BenchError(f"timed out during {stage}")


# -- the baselines ---------------------------------------------------------------------------


def raw_roundtrip(
    n: int,
    payload_size: int,
    *,
    window: int = 1000,
    prefetch: int = 1000,
    coalesce_acks: bool = True,
    coalesce_writes: bool = True,
    recv_bytes: int = 32768,
) -> Result:
    """Publisher process (confirms, ``window`` unconfirmed in flight) -> one durable quorum
    queue -> consumer process (``prefetch``, acks). Rate: n / (first publish .. last consumed)."""
    with temp_vhost("docex-bench-raw") as vhost:
        _declare(vhost, [RAW_Q], {})
        common = {
            "n": n,
            "prefetch": prefetch,
            "coalesce_acks": coalesce_acks,
            "coalesce_writes": coalesce_writes,
            "recv_bytes": recv_bytes,
        }
        reports = _run_roles(
            vhost,
            [
                ("raw_consumer", common),
                ("raw_publisher", {**common, "payload_size": payload_size, "window": window}),
            ],
            want=2,
            timeout=60 + n / 100,
        )
    by_role = {r["role"]: r for r in reports}
    t0 = by_role["publisher"]["t0"]
    seconds = by_role["consumer"]["t1"] - t0
    publish_s = by_role["publisher"]["t1"] - t0
    return Result(
        "raw_roundtrip",
        n,
        seconds,
        "msgs/s",
        {"payload": payload_size, "publish_rate": n / publish_s},
    )


def bare_choreography(
    n: int,
    payload_size: int,
    recipients: int = 1,
    *,
    latency_docs: int | None = None,
    warmup: int | None = None,
    window: int = 1000,
    hub_workers: int = 1,
    recipient_workers: int = 1,
    coalesce_acks: bool = True,
    queue_type: str = "quorum",
    prefetch: int = 500,
    coalesce_writes: bool = True,
    recv_bytes: int = 32768,
) -> Result:
    """The bare hops of a receipted document (no crypto, no DB), one process per role:
    sender -> ingress -> hub -> one copy per recipient queue -> recipient -> receipt to the
    ingress -> hub -> sender's queue -> sender. Rate: documents whose every receipt reached
    the sender, per second, at max throughput (``window`` unreceipted documents in flight).
    Then ``latency_docs`` more are sent open-loop at half that rate for p50/p99 latency."""
    latency_docs = n // 2 if latency_docs is None else latency_docs
    warmup = min(1000, n // 10) if warmup is None else warmup
    rq = [f"unit.r{i}" for i in range(recipients)]
    with temp_vhost("docex-bench-chor") as vhost:
        _declare(
            vhost,
            [INGRESS_Q, SENDER_Q, *rq],
            {INGRESS_X: [INGRESS_Q], DELIVER_X: [SENDER_Q, *rq]},
            queue_type,
        )
        common = {
            "coalesce_acks": coalesce_acks,
            "prefetch": prefetch,
            "coalesce_writes": coalesce_writes,
            "recv_bytes": recv_bytes,
        }
        roles: list[tuple[str, dict[str, Any]]] = [
            ("hub", {**common, "recipients": rq}) for _ in range(hub_workers)
        ]
        workers = max(1, min(recipient_workers, recipients))
        roles += [("recipient", {**common, "queues": rq[i::workers]}) for i in range(workers)]
        roles.append(
            (
                "sender",
                {
                    **common,
                    "recipients": rq,
                    "payload_size": payload_size,
                    "n": n,
                    "warmup": warmup,
                    "latency_docs": latency_docs,
                    "window": window,
                },
            )
        )
        (out,) = _run_roles(vhost, roles, want=1, timeout=120 + 3 * (n + latency_docs) / 100)
    extra: dict[str, Any] = {"recipients": recipients, "payload": payload_size}
    if latency_docs:
        pct = percentiles(out["latencies"], (50, 99))
        extra.update(
            lat_at_rate=out["rate_target"],
            p50_ms=pct["p50"] * 1000,
            p99_ms=pct["p99"] * 1000,
        )
    return Result("bare_choreography", n, out["max_t1"] - out["max_t0"], "docs/s", extra)


# -- the suite -------------------------------------------------------------------------------

_SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name -> (quick, full) keyword arguments
    "raw_roundtrip": ({"n": 2000, "payload_size": 10_240}, {"n": 50_000, "payload_size": 10_240}),
    "bare_choreography": (
        {"n": 1000, "payload_size": 10_240, "recipients": 1},
        {"n": 20_000, "payload_size": 10_240, "recipients": 1},
    ),
    "bare_choreography_5": (
        {"n": 300, "payload_size": 10_240, "recipients": 5},
        {"n": 5_000, "payload_size": 10_240, "recipients": 5},
    ),
}

_memo: dict[tuple[str, bool], Result] = {}


def measured(name: str, quick: bool) -> Result:
    """The named baseline (a key of ``_SIZES``), measured once per process and reused, so
    every suite of one run compares against the same numbers."""
    key = (name, quick)
    if key not in _memo:
        kw = _SIZES[name][0 if quick else 1]
        if name == "raw_roundtrip":
            res = raw_roundtrip(**kw)
        else:
            res = bare_choreography(**kw)
            res.name = name
        _memo[key] = res
    return _memo[key]


def run(quick: bool) -> list[Result]:
    return [measured(name, quick) for name in _SIZES]
