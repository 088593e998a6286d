"""Faults while documents flow: the hub and agents killed with SIGKILL (no handler runs,
nothing is acknowledged or flushed) and restarted, and every broker connection cut. In the
end every document reached every recipient exactly once (inbox folders, the agents'
Received rows, the hub's Delivery rows), every receipt is recorded once, nothing was
refused as a duplicate, and the audit chain verifies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from docex.agent.store import Quarantined, Received, SentRecipient
from docex.hub import audit
from docex.hub.models import AuditEntry, Delivery, Document, Receipt, Rejection
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


def test_sigkill_hub_and_agents_mid_stream_loses_and_duplicates_nothing(county: Network) -> None:
    ids = queue_stream(county, 150, "SIGKILL")
    total = len(ids) * len(RECIPIENTS)

    wait_until(lambda: county.documents() >= 15, 120, "the hub accepting documents")
    county.kill("hub")
    assert delivered(county, ids) < total  # it died mid-stream
    county.start_hub()

    # Early in the second leg, so that the kills land mid-stream however fast the hub is.
    wait_until(lambda: county.received_count(VICTIM) >= 5, 120, f"{VICTIM} receiving")
    county.kill(county.hosts[VICTIM])
    county.kill(county.hosts[SENDER])
    assert delivered(county, ids) < total
    county.start_agents([VICTIM, SENDER])

    wait_until(lambda: delivered(county, ids) >= total // 2, 120, "half delivered")
    county.kill("hub")
    county.start_hub()

    assert_exactly_once(county, ids)
    # and each process really was restarted
    assert county.log_text("hub").count(" running: ") == 3


def test_broker_connections_cut_mid_stream_everyone_reconnects(county: Network) -> None:
    ids = queue_stream(county, 40, "断线")
    wait_until(lambda: delivered(county, ids) >= 10, 120, "documents flowing")
    vhost = county.config.broker.vhost
    with county.management() as mgmt:
        for conn in mgmt.list_connections(vhost):
            mgmt.close_connection(conn.name, "docex test: simulated broker restart")
    assert_exactly_once(county, ids)


def test_inbox_holds_no_partial_extraction_as_a_document(county: Network) -> None:
    for address in RECIPIENTS:
        inbox = Path(county.home(address) / "inbox")
        for folder in inbox_folders(county, address):
            assert (inbox / folder / "manifest.json").exists()
