"""Hub capacity and an idle agent (issue 16), beside the bare choreography of the same run.

``hub_capacity``: the hub alone (``docex hub run``, SQLite, its TSA) between two light
drivers: envelopes (10 KB, one recipient) and their ``delivered`` receipts are built before
the clock starts, with the real protocol code and the units' own keys; one thread publishes
the envelopes as the sending unit (``window`` unreceipted in flight), one consumes the
recipient's inbox and answers each copy with its pre-built receipt as the recipient, one
consumes the sender's inbox and stops a document's clock when its receipt came back. The
agents' own work is out of the measurement; the hub's is all in it: verify, record, audit,
evidence (signatures and timestamps), publish; then the receipt: verify, stamp, record,
forward. Ratio against ``bare_choreography`` (the same hops, no crypto, no database).
``hub_cpu_ms`` is the hub's CPU per document (from /proc), the figure that bounds it.

``idle_agent``: one agent process (``docex agent run``) connected and idle: its resident
memory (VmRSS) and CPU share over ``idle_seconds``.

``python -m bench capacity [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pika

from bench.e2e import PREFIX, SENDER, KeyPool, county_units
from bench.harness import Result

TITLE = "容量 hub capacity (light drivers, agents out of the measurement) and an idle agent"
BASELINE = "bare_choreography"
PAYLOAD = 10 * 1024


class BenchError(RuntimeError):
    pass


def _cpu_seconds(pid: int) -> float:
    from bench.profile_e2e import cpu_seconds

    return cpu_seconds(pid)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class HubOnly:
    """A LocalNetwork (the bench sender and one county unit) with only its hub running."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="docex-bench-capacity-"))
        self.net: Any = None

    def __enter__(self) -> HubOnly:
        from docex.cli.localnet import LocalNetwork

        try:
            with KeyPool().patched():
                self.net = LocalNetwork.create(
                    self.root, PREFIX, county_units(1), tag=f"bench{uuid.uuid4().hex[:8]}"
                )
            self.net.start_hub(workers=1)
            self.net.wait_ready("hub", "running", timeout=120)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def recipient(self) -> str:
        return next(a for a in self.net.agents if a != SENDER)

    def __exit__(self, *_exc: object) -> None:
        try:
            if self.net is not None:
                self.net.destroy()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _prebuild(net: Any, recipient: str, n: int) -> list[tuple[str, bytes, bytes]]:
    """(message id, envelope, its delivered receipt), made with the units' own keys."""
    from docex.agent.context import AgentContext
    from docex.protocols import envelope
    from docex.protocols.manifest import Manifest, new_message_id
    from docex.protocols.receipt import envelope_digest, make_receipt

    sender = AgentContext.open(net.agents[SENDER])
    rcpt = AgentContext.open(net.agents[recipient])
    try:
        payload = os.urandom(PAYLOAD)
        out = []
        for i in range(n):
            manifest = Manifest(
                message_id=new_message_id(),
                sender=SENDER,
                recipients=(recipient,),
                title="电子公文交换系统容量测试",
                doc_number=f"阳测〔2011〕{i + 1}号",
            )
            body = envelope.pack(
                manifest, {"正文.txt": payload}, sender.creds, [rcpt.creds.enc_cert]
            )
            _, receipt = make_receipt(
                message_id=manifest.message_id,
                recipient=recipient,
                event="delivered",
                envelope_sha256=envelope_digest(body),
                cert=rcpt.creds.sign_cert,
                key=rcpt.creds.sign_key,
            )
            out.append((manifest.message_id, body, receipt))
        return out
    finally:
        sender.store.dispose()
        rcpt.store.dispose()


def _params(net: Any, address: str) -> tuple[pika.ConnectionParameters, str]:
    from docex.agent.context import AgentContext
    from docex.agent.service import broker_settings

    ctx = AgentContext.open(net.agents[address], need_keys=False)
    try:
        return broker_settings(ctx).parameters(f"bench-driver-{address}"), ctx.broker_user
    finally:
        ctx.store.dispose()


def drive(net: Any, recipient: str, docs: list[tuple[str, bytes, bytes]], window: int) -> float:
    """Seconds from the first envelope published to the last receipt back at the sender."""
    from docex.broker.topology import INGRESS_EXCHANGE, ingress_routing_key, unit_queue
    from docex.protocols import messages

    receipts = {mid: r for mid, _, r in docs}
    done: set[str] = set()
    cond = threading.Condition()
    errors: list[BaseException] = []
    stop = threading.Event()

    def inbox(address: str, on_message: Any) -> None:
        params, _ = _params(net, address)
        conn = pika.BlockingConnection(params)
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=500)
            ch.basic_consume(unit_queue(address), lambda c, m, p, b: on_message(c, m, p, b))
            while not stop.is_set():
                conn.process_data_events(time_limit=0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            if conn.is_open:
                conn.close()

    _, rcpt_user = _params(net, recipient)

    def answer(ch: Any, method: Any, props: Any, _body: bytes) -> None:
        # The recipient: a pre-built receipt for every copy (no crypto, no store).
        if props.type == messages.DOCUMENT and props.message_id in receipts:
            ch.basic_publish(
                INGRESS_EXCHANGE,
                ingress_routing_key(messages.RECEIPT),
                receipts[props.message_id],
                pika.BasicProperties(
                    message_id=messages.receipt_key(props.message_id, recipient, "delivered"),
                    type=messages.RECEIPT,
                    user_id=rcpt_user,
                    delivery_mode=2,
                ),
            )
        ch.basic_ack(method.delivery_tag)

    def back(ch: Any, method: Any, props: Any, _body: bytes) -> None:
        # The sender: a document's clock stops when its receipt is back.
        if props.type == messages.RECEIPT:
            mid = (props.message_id or "").split("|")[0]
            with cond:
                done.add(mid)
                cond.notify_all()
        ch.basic_ack(method.delivery_tag)

    threads = [
        threading.Thread(target=inbox, args=(recipient, answer), daemon=True),
        threading.Thread(target=inbox, args=(SENDER, back), daemon=True),
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)  # both consuming
    params, sender_user = _params(net, SENDER)
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        t0 = time.monotonic()
        deadline = t0 + 120 + len(docs) / 5
        for i, (mid, body, _) in enumerate(docs):
            with cond:
                while i - len(done) >= window and not errors:
                    if time.monotonic() > deadline:
                        raise BenchError(f"timed out: {len(done)} of {len(docs)} receipted")
                    cond.wait(0.2)
            ch.basic_publish(
                INGRESS_EXCHANGE,
                ingress_routing_key(messages.DOCUMENT),
                body,
                pika.BasicProperties(
                    message_id=mid, type=messages.DOCUMENT, user_id=sender_user, delivery_mode=2
                ),
            )
            conn.process_data_events(time_limit=0)
        with cond:
            while len(done) < len(docs) and not errors:
                if time.monotonic() > deadline:
                    raise BenchError(f"timed out: {len(done)} of {len(docs)} receipted")
                cond.wait(0.2)
        seconds = time.monotonic() - t0
    finally:
        stop.set()
        if conn.is_open:
            conn.close()
        for t in threads:
            t.join(10)
    if errors:
        raise BenchError(f"driver failed: {errors[0]!r}")
    return seconds


def hub_capacity(quick: bool) -> Result:
    n, warm, window = (60, 10, 32) if quick else (600, 60, 128)
    with HubOnly() as hub:
        net, recipient = hub.net, hub.recipient
        docs = _prebuild(net, recipient, warm + n)
        drive(net, recipient, docs[:warm], window)
        pid = net.procs["hub"].pid
        cpu0 = _cpu_seconds(pid)
        seconds = drive(net, recipient, docs[warm:], window)
        cpu = _cpu_seconds(pid) - cpu0
    return Result(
        "hub_capacity",
        n,
        seconds,
        "docs/s",
        {"recipients": 1, "window": window, "hub_cpu_ms": 1000 * cpu / n, "hub_workers": 1},
        baseline="bare_choreography",
    )


def idle_agent(quick: bool) -> Result:
    """One agent connected and idle: RSS and CPU share, after it settled."""
    settle, seconds = (5.0, 10.0) if quick else (15.0, 60.0)
    with HubOnly() as hub:
        net = hub.net
        net.start_agent(hub.recipient)
        net.wait_ready(hub.recipient, f"agent {hub.recipient} (", timeout=120)
        time.sleep(settle)
        pid = net.procs[hub.recipient].pid
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu, elapsed = _cpu_seconds(pid) - cpu0, time.monotonic() - t0
        rss = _rss_mb(pid)
    return Result(
        "idle_agent",
        1,
        elapsed,
        "agents",
        {"rss_mb": rss, "cpu_pct": 100 * cpu / elapsed},
        baseline="-",  # no baseline: a bound in MB and % of a core
    )


def run(quick: bool) -> list[Result]:
    from bench.baselines import measured

    rows = [measured("bare_choreography", quick), hub_capacity(quick), idle_agent(quick)]
    judge(rows)
    return rows


def judge(rows: list[Result]) -> None:
    """Issue 16's targets, met or not, in the rows they concern (``goal`` extra)."""
    by = {r.name: r for r in rows}
    share = by["hub_capacity"].rate / by["bare_choreography"].rate
    by["hub_capacity"].extra["goal"] = f">=25%bare:{'met' if share >= 0.25 else 'NOT-met'}({share:.1%})"
    idle = by["idle_agent"].extra
    idle["goal"] = (
        f"rss<60MB:{'met' if idle['rss_mb'] < 60 else 'NOT-met'},"
        f"cpu<0.5%:{'met' if idle['cpu_pct'] < 0.5 else 'NOT-met'}"
    )
