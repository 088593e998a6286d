"""The status collector: snapshot -> gauges, and a failing snapshot never breaks a scrape."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from docex.monitoring import status
from docex.monitoring.labels import DELIVERY_STATES
from docex.monitoring.scrape import Samples
from docex.monitoring.status import LinkStatus, StatusCollector, StatusSnapshot
from tests.monitoring.conftest import full_snapshot


def scrape(collector: StatusCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    return Samples.parse(generate_latest(registry).decode())


def test_full_snapshot_becomes_gauges() -> None:
    s = scrape(StatusCollector(full_snapshot))
    assert s.value("docex_status_up") == 1
    assert s.value("docex_status_errors_total") == 0
    assert s.value("docex_deliveries", state="delivered") == 7
    for state in DELIVERY_STATES:  # states without rows are reported as zero
        assert s.value("docex_deliveries", state=state) >= 0
    assert s.value("docex_deliveries", state="returned") == 0
    assert s.value("docex_queue_messages", queue="unit.qingyuan.yangshan.xwb") == 3
    assert s.value("docex_oldest_undelivered_seconds", unit="parent") == 30
    assert s.value("docex_units", state="online") == 118
    assert s.value("docex_units", state="total") == 125
    assert s.value("docex_unit_last_seen_seconds", unit="qingyuan.yangshan.libu") == 7300
    assert s.value("docex_certificates_expiring") == 2
    assert s.value("docex_audit_chain_ok") == 1
    assert s.value("docex_deliveries_overdue") == 1
    assert s.value("docex_dead_letters") == 0
    assert s.value("docex_link_up", link="parent") == 1
    assert s.value("docex_link_backlog", link="parent", direction="out") == 5
    assert s.value("docex_link_backlog", link="parent", direction="in") == 1
    assert s.value("docex_link_oldest_seconds", link="parent") == 42
    assert s.value("docex_outbox_pending") == 0
    assert s.value("docex_inbox_unsigned") == 3
    assert s.value("docex_inbox_awaiting_trust") == 1


def test_a_bridge_reports_only_what_it_knows() -> None:
    snap = StatusSnapshot(links={"parent": LinkStatus(up=False, backlog_out=9)})
    s = scrape(StatusCollector(lambda: snap, service="bridge"))
    assert s.value("docex_link_up", link="parent") == 0
    assert s.value("docex_link_backlog", link="parent", direction="out") == 9
    for absent in (
        "docex_deliveries",
        "docex_audit_chain_ok",
        "docex_units",
        "docex_deliveries_overdue",
        "docex_dead_letters",
        "docex_outbox_pending",
        "docex_inbox_unsigned",
        "docex_inbox_awaiting_trust",
    ):
        assert absent not in s.names()


def test_audit_chain_broken_is_zero() -> None:
    s = scrape(StatusCollector(lambda: StatusSnapshot(audit_chain_ok=False)))
    assert s.value("docex_audit_chain_ok") == 0


def test_failing_snapshot_is_logged_and_counted_and_the_scrape_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = {"n": 0}

    def flaky() -> StatusSnapshot:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("database is locked")
        return StatusSnapshot(overdue=3)

    registry = CollectorRegistry()
    registry.register(StatusCollector(flaky))
    with caplog.at_level(logging.ERROR):
        first = Samples.parse(generate_latest(registry).decode())
        Samples.parse(generate_latest(registry).decode())
    assert first.value("docex_status_up") == 0
    assert first.value("docex_status_errors_total") == 1
    assert "docex_deliveries_overdue" not in first.names()
    assert "database is locked" in caplog.text
    third = Samples.parse(generate_latest(registry).decode())
    assert third.value("docex_status_up") == 1
    assert third.value("docex_status_errors_total") == 2
    assert third.value("docex_deliveries_overdue") == 3


def test_wrong_return_type_counts_as_an_error() -> None:
    s = scrape(StatusCollector(lambda: {"overdue": 1}))  # type: ignore[arg-type, return-value]
    assert s.value("docex_status_up") == 0
    assert s.value("docex_status_errors_total") == 1


def test_cache_shares_one_snapshot_between_scrapes() -> None:
    calls = {"n": 0}

    def source() -> StatusSnapshot:
        calls["n"] += 1
        return StatusSnapshot(overdue=calls["n"])

    registry = CollectorRegistry()
    registry.register(StatusCollector(source, cache_seconds=3600))
    for _ in range(3):
        assert (
            Samples.parse(generate_latest(registry).decode()).value("docex_deliveries_overdue") == 1
        )
    assert calls["n"] == 1
    uncached = StatusCollector(source)
    scrape(uncached)
    scrape(uncached)
    assert calls["n"] == 3


def test_series_per_family_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "MAX_SERIES", 10)
    snap = StatusSnapshot(unit_last_seen_seconds={f"u{i:03d}": float(i) for i in range(50)})
    s = scrape(StatusCollector(lambda: snap))
    assert len(list(s.find("docex_unit_last_seen_seconds"))) == 10
