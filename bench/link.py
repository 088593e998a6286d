"""Across the link (issue 7): documents per second from a county unit to a city unit, over
the bridge, next to the same from that unit to another unit of its own hub, same run.

A :class:`CityCounty` network on the local broker: the city hub and the county hub (each
``docex hub run``, SQLite), the bridge (``docex bridge run``) and the units' agents, all
processes. The bench packs N documents (10 KB, one recipient) ahead, puts them into the county
sender's outbox in one commit (its running agent publishes them) and stops the clock when
the sender's store holds every ``delivered`` receipt; p50/p99 are per document. One
document's time covers sender -> county intake -> [bridge -> city intake ->] recipient ->
receipt back the same way. ``within_hub`` first, then ``across_link`` on the same network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Result, percentiles

TITLE = "链路 across the link: county unit -> city unit over the bridge, vs. within one hub"
BASELINE = "within_hub"

SENDER, LOCAL, REMOTE = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.swb"
PAYLOAD = 10 * 1024


def _units() -> tuple[list[Any], list[Any]]:
    from docex.hub.units import CsvUnit

    city = [CsvUnit(REMOTE, "中共清远市委办公室", "party", "", "")]
    county = [CsvUnit(SENDER, "阳山县信息中心", "county", "", ""), CsvUnit(LOCAL, "阳山县人民政府办公室", "government", "", "")]
    return city, county


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"link bench: timed out waiting for {what}")
        time.sleep(0.05)


def _pack(ctx: Any, recipient: str, count: int) -> list[tuple[str, bytes]]:
    """Envelopes packed ahead (sign, encrypt, sign), so the clock measures the network."""
    from docex.protocols import envelope
    from docex.protocols.manifest import Manifest, new_message_id

    cert = ctx.lookup(recipient).enc_certificate()
    body = os.urandom(PAYLOAD)
    out = []
    for i in range(count):
        m = Manifest(message_id=new_message_id(), sender=ctx.creds.address, recipients=(recipient,),
                     title="性能测试", doc_number=f"测〔2011〕{i}号")
        out.append((m.message_id, envelope.pack(m, {"a.bin": body}, ctx.creds, [cert])))
    return out


def _run_batch(ctx: Any, recipient: str, count: int, name: str) -> Result:
    from sqlalchemy import func, select

    from docex.agent.store import Outgoing, Sent, SentRecipient
    from docex.protocols import messages

    packed = _pack(ctx, recipient, count)
    ids = [mid for mid, _ in packed]
    started = time.perf_counter()
    with ctx.store.session() as s:  # one commit: the running agent publishes them all at once
        for mid, data in packed:
            s.add(Outgoing(kind=messages.DOCUMENT, message_id=mid, body=data))
            s.add(Sent(message_id=mid, title="性能测试", doc_number="测", priority="平急"))
            s.add(SentRecipient(message_id=mid, recipient=recipient, state="queued"))

    def delivered() -> bool:
        with ctx.store.session() as s:
            n = s.execute(select(func.count()).select_from(SentRecipient).where(
                SentRecipient.message_id.in_(ids), SentRecipient.state == "delivered")).scalar_one()
        return int(n) == count

    _wait(delivered, 60 + count * 2.0, f"{name}: {count} delivered receipts")
    seconds = time.perf_counter() - started
    with ctx.store.session() as s:
        rows = s.execute(select(Sent.created_at, SentRecipient.at).join(
            SentRecipient, SentRecipient.message_id == Sent.message_id).where(Sent.message_id.in_(ids))).all()
    latencies = [(at.timestamp() - created.timestamp()) for created, at in rows if at is not None]
    extra = {k: round(v, 3) for k, v in percentiles(latencies).items()}
    return Result(name, count, seconds, extra=extra, baseline=None if name == BASELINE else BASELINE)


def run(quick: bool) -> list[Result]:
    from docex.agent.context import AgentContext
    from docex.cli.localnet import CityCounty

    count = 20 if quick else 150
    root = Path(tempfile.mkdtemp(prefix="docex-bench-link-"))
    city_units, county_units = _units()
    net = CityCounty.create(root, city_units=city_units, county_units=county_units, tag=f"bl{uuid.uuid4().hex[:6]}")
    ctx = None
    try:
        net.start(per_process=8)
        ctx = AgentContext.open(net.county.agents[SENDER])
        _wait(lambda: ctx.lookup(REMOTE) is not None, 60, "the city's directory at the county sender")
        _run_batch(ctx, LOCAL, 3, "warmup_local")
        _run_batch(ctx, REMOTE, 3, "warmup_link")
        local = _run_batch(ctx, LOCAL, count, "within_hub")
        across = _run_batch(ctx, REMOTE, count, "across_link")
        import json

        time.sleep(2.5)  # the bridge rewrites its status.json every 2 s
        report = json.loads((net.bridge_home / "status.json").read_text("utf-8"))
        across.extra["bridge_moved"] = report["pumps"]["out"]["moved"] + report["pumps"]["in"]["moved"]
        return [local, across]
    finally:
        if ctx is not None:
            ctx.store.dispose()
        net.destroy()
        shutil.rmtree(root, ignore_errors=True)
