"""Fixtures for the monitoring tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from docex.monitoring.exporter import service_metrics
from docex.monitoring.scrape import Samples
from docex.monitoring.status import LinkStatus, StatusSnapshot

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "docex" / "monitoring"


def full_snapshot() -> StatusSnapshot:
    """A hub snapshot with every field set, so every status gauge is exposed."""
    return StatusSnapshot(
        deliveries_by_state={"routed": 4, "delivered": 7, "signed_for": 30},
        queue_depths={"hub.ingress": 2, "unit.qingyuan.yangshan.xwb": 3},
        oldest_undelivered_seconds={"qingyuan.yangshan.xwb": 120.0, "parent": 30.0},
        units_total=125,
        units_online=118,
        unit_last_seen_seconds={"qingyuan.yangshan.xwb": 12.0, "qingyuan.yangshan.libu": 7300.0},
        certificates_expiring_30d=2,
        audit_chain_ok=True,
        overdue=1,
        dead_letters=0,
        links={"parent": LinkStatus(up=True, backlog_out=5, backlog_in=1, oldest_seconds=42.0)},
        outbox_pending=0,
        inbox_unsigned=3,
        inbox_awaiting_trust=1,
    )


@pytest.fixture(scope="session")
def defined_metric_names() -> set[str]:
    """Every sample name docex code can expose (hooks all called, full snapshot), plus
    Prometheus' own `up`."""
    registry, observer = service_metrics("hub", status=full_snapshot)
    observer.document_accepted("qingyuan.yangshan.xwb", 3, 2048, 0.02)
    observer.document_rejected("duplicate")
    observer.delivery_state("delivered")
    observer.receipt("delivered")
    observer.delivered(3.0)
    observer.signed_for(600.0)
    observer.agent_sent()
    observer.agent_received()
    observer.agent_quarantined("signature_invalid")
    observer.link_forwarded("parent", "out", 4096)
    observer.link_error("parent", "timeout")
    return Samples.parse(generate_latest(registry).decode()).names() | {"up"}
