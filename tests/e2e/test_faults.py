"""Faults while documents flow: the hub and agents killed with SIGKILL (no handler runs,
nothing is acknowledged or flushed) and restarted, and every broker connection cut. In the
end every document reached every recipient exactly once (inbox folders, the agents'
Received rows, the hub's Delivery rows), every receipt is recorded once, nothing was
refused as a duplicate, and the audit chain verifies."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docex.agent.actions import sign_for
from docex.agent.store import Outgoing, Quarantined, Received, SentRecipient
from docex.hub import audit
from docex.hub.models import AuditEntry, Delivery, Document, Receipt, Rejection
from docex.protocols import messages
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

RECIPIENTS = ["qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb", "qingyuan.yangshan.jw"]
VICTIM = RECIPIENTS[1]


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:
    net = network(4)
    net.start_hub()
    net.start_agents()  # one process each: each can be killed alone
    yield net


def queue_stream(net: Network, count: int, label: str) -> list[str]:
    return [net.send(SENDER, RECIPIENTS, files={"正文.txt": f"{label} 第{i}号".encode()},
                     doc_number=f"阳信发〔2011〕{i}号")[0] for i in range(count)]


def delivered(net: Network, ids: list[str]) -> int:
    return net.count(Delivery, Delivery.message_id.in_(ids), Delivery.state == "delivered")


def inbox_folders(net: Network, address: str) -> set[str]:
    # Hidden `.partial-*` folders are extractions a kill interrupted: never a document.
    return {p.name for p in (net.home(address) / "inbox").iterdir() if p.is_dir() and not p.name.startswith(".")}


def assert_exactly_once(net: Network, ids: list[str]) -> None:
    wanted = set(ids)
    total = len(ids) * len(RECIPIENTS)
    wait_until(lambda: delivered(net, ids) == total, 180, f"{total} deliveries delivered")
    wait_until(lambda: sum(1 for mid in ids for r in net.sent(SENDER, mid).values() if r.state == "delivered") == total,
               120, "every receipt back at the sender")
    assert net.count(Document, Document.message_id.in_(ids)) == len(ids)
    assert net.count(Delivery, Delivery.message_id.in_(ids)) == total
    assert net.count(Receipt, Receipt.message_id.in_(ids), Receipt.event == "delivered") == total
    assert net.count(Rejection, Rejection.message_id.in_(ids)) == 0  # redeliveries were harmless
    with net.db.read() as s:
        accepts = s.execute(select(AuditEntry.subject).where(AuditEntry.action == "document.accept",
                                                             AuditEntry.subject.in_(ids))).scalars().all()
        assert sorted(accepts) == sorted(ids)
        assert audit.verify_chain(s).ok
    for address in RECIPIENTS:
        assert wanted <= inbox_folders(net, address), address
        with net.agent(address).store.session() as s:
            got = s.execute(select(Received.message_id).where(Received.message_id.in_(ids))).scalars().all()
            assert sorted(got) == sorted(ids), address
            assert s.execute(select(Quarantined.id)).first() is None
    with net.agent(SENDER).store.session() as s:
        rows = s.execute(select(SentRecipient).where(SentRecipient.message_id.in_(ids))).scalars().all()
        assert len(rows) == total and {r.state for r in rows} == {"delivered"}


def published(net: Network, ids: list[str], sender: str = SENDER) -> bool:
    """Every message of the stream has left the sender's outbox (confirmed by the broker)."""
    with net.agent(sender).store.session() as s:
        waiting = s.execute(select(func.count()).select_from(Outgoing).where(
            Outgoing.message_id.in_(ids), Outgoing.sent_at.is_(None))).scalar_one()
    return waiting == 0


def accepted(net: Network, ids: list[str]) -> int:
    return net.count(Document, Document.message_id.in_(ids))


def received(net: Network, address: str, ids: list[str]) -> int:
    # Read-only: the agent may be frozen (SIGSTOP) inside a write transaction, and a store
    # session begins IMMEDIATE, which would wait for that lock; a WAL reader never waits.
    db = sqlite3.connect(f"file:{net.agent(address).store.engine.url.database}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(ids))
        (count,) = db.execute(f"SELECT count(*) FROM {Received.__tablename__} WHERE message_id IN ({marks})",
                              ids).fetchone()
    finally:
        db.close()
    return int(count)


def backlog_at_hub(net: Network, count: int, label: str) -> list[str]:
    """Queue a stream while the hub is paused, so that all of it waits at the hub's ingress:
    whatever the hub's speed, a fault after the first few documents lands mid-stream."""
    net.pause("hub")
    ids = queue_stream(net, count, label)
    wait_until(lambda: published(net, ids), 120, "the whole stream published to the paused hub")
    net.resume("hub")
    return ids


@pytest.mark.timeout(900)  # three restarts and 450 deliveries: minutes on a loaded 2-core machine
def test_sigkill_hub_and_agents_mid_stream_loses_and_duplicates_nothing(county: Network) -> None:
    try:
        ids = backlog_at_hub(county, 150, "SIGKILL")
        total = len(ids) * len(RECIPIENTS)

        # 1. The hub dies while it works through the backlog.
        wait_until(lambda: accepted(county, ids) >= 15, 120, "the hub accepting documents", interval=0.02)
        county.pause("hub")
        assert accepted(county, ids) < len(ids)  # frozen mid-stream: the kill lands there
        county.kill("hub")
        county.pause(county.hosts[VICTIM])  # its inbox fills while it is frozen
        county.start_hub()

        # 2. A recipient (and the sender, collecting receipts) die while the recipient works
        # through its inbox.
        wait_until(lambda: county.queue_depth(f"unit.{VICTIM}") >= 30 or
                   county.count(Delivery, Delivery.message_id.in_(ids), Delivery.recipient == VICTIM) == len(ids),
                   120, f"a backlog for {VICTIM}")
        county.resume(county.hosts[VICTIM])
        wait_until(lambda: received(county, VICTIM, ids) >= 5, 120, f"{VICTIM} receiving", interval=0.02)
        county.pause(county.hosts[VICTIM])
        county.pause(county.hosts[SENDER])
        assert received(county, VICTIM, ids) < len(ids)
        county.kill(county.hosts[VICTIM])
        county.kill(county.hosts[SENDER])
        county.start_agents([VICTIM, SENDER])

        # 3. The hub dies again while receipts and deliveries flow.
        wait_until(lambda: delivered(county, ids) >= total // 2, 120, "half delivered", interval=0.02)
        county.pause("hub")
        assert delivered(county, ids) < total
        county.kill("hub")
        county.start_hub()

        assert_exactly_once(county, ids)
        # and each process really was restarted
        assert county.log_text("hub").count(" running: ") == 3
    finally:
        county.recover()


def test_broker_connections_cut_mid_stream_everyone_reconnects(county: Network) -> None:
    try:
        ids = backlog_at_hub(county, 40, "断线")
        total = len(ids) * len(RECIPIENTS)
        wait_until(lambda: delivered(county, ids) >= 10, 120, "documents flowing", interval=0.02)
        county.pause("hub")
        assert delivered(county, ids) < total  # the cut lands mid-stream
        vhost = county.config.broker.vhost
        with county.management() as mgmt:
            for conn in mgmt.list_connections(vhost):
                mgmt.close_connection(conn.name, "docex test: simulated broker restart")
        county.resume("hub")
        assert_exactly_once(county, ids)
    finally:
        county.recover()


def test_inbox_holds_no_partial_extraction_as_a_document(county: Network) -> None:
    for address in RECIPIENTS:
        inbox = Path(county.home(address) / "inbox")
        for folder in inbox_folders(county, address):
            assert (inbox / folder / "manifest.json").exists()


def test_receipts_do_not_wait_behind_a_document_backlog(county: Network) -> None:
    """Receipts travel in hub.receipts: a 签收 given while a hundred documents wait at the hub
    is recorded before that backlog is through."""
    try:
        mid, _ = county.send(SENDER, [VICTIM], doc_number="阳信发〔2011〕88号")
        county.wait_hub(mid, "delivered", [VICTIM])
        county.pause("hub")
        ids = queue_stream(county, 100, "积压")
        wait_until(lambda: published(county, ids), 120, "the backlog waiting at the paused hub")
        sign_for(county.agent(VICTIM), mid)
        key = messages.receipt_key(mid, VICTIM, "signed_for")
        wait_until(lambda: published(county, [key], VICTIM), 60, "the receipt published")
        county.resume("hub")
        wait_until(lambda: county.hub_states(mid) == {VICTIM: "signed_for"}, 120, "the 签收 recorded")
        assert accepted(county, ids) < len(ids)  # it overtook the backlog
        assert_exactly_once(county, ids)
    finally:
        county.recover()


def test_an_agent_stops_within_five_seconds_of_sigterm(county: Network) -> None:
    name = county.hosts[SENDER]
    proc = county.net.procs[name]
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=5) == 0  # a service manager's stop: prompt and clean
    finally:
        county.recover()
