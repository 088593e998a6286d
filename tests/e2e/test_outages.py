"""Outages never become loss: the hub's PostgreSQL down for 30 s and an agent's disk full
for a minute while documents arrive. Nothing is dead-lettered, nobody has to act, and when
the dependency returns every document reaches every recipient exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e import test_faults as faults
from tests.e2e.conftest import NetworkFactory
from tests.e2e.outages import PrivatePostgres, SmallDisk
from tests.e2e.support import Network, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

DB_OUTAGE_S = 30.0
DISK_OUTAGE_S = 60.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres.create()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def county(network: NetworkFactory, postgres: PrivatePostgres) -> Iterator[Network]:
    net = network(4, database_url=postgres.url)
    disk = SmallDisk(net.home(faults.VICTIM) / "inbox")
    net.disk = disk  # type: ignore[attr-defined]
    try:
        net.start_hub()
        net.start_agents()
        yield net
    finally:
        net.net.stop_all()
        disk.unmount()


@pytest.mark.timeout(600)
def test_database_outage_at_the_hub_loses_nothing(county: Network, postgres: PrivatePostgres) -> None:
    try:
        postgres.stop()
        began = time.monotonic()
        ids = faults.queue_stream(county, 20, "数据库中断")
        wait_until(lambda: "数据库 不可用" in county.log_text("hub"), 60, "the hub noticing the outage")
        wait_until(lambda: faults.published(county, ids), 60, "the stream waiting at the hub")
        time.sleep(max(0.0, DB_OUTAGE_S - (time.monotonic() - began)))
        assert county.queue_depth("hub.dead") == 0
    finally:
        postgres.start()
    faults.assert_exactly_once(county, ids)
    log = county.log_text("hub")
    assert "数据库 已恢复" in log
    # One line as the outage starts and one as it ends, per consumer and for the jobs:
    # no traceback every few seconds.
    assert log.count("定时任务暂停") == 1 and "Traceback" not in log, log[-3000:]
    assert county.queue_depth("hub.dead") == 0


@pytest.mark.timeout(600)
def test_full_disk_under_an_agent_loses_nothing(county: Network) -> None:
    disk: SmallDisk = county.disk  # type: ignore[attr-defined]
    host = county.hosts[faults.VICTIM]
    try:
        disk.fill()
        began = time.monotonic()
        ids = faults.queue_stream(county, 20, "磁盘已满")
        wait_until(lambda: "磁盘 不可用" in county.log_text(host), 120, f"{faults.VICTIM} noticing its full disk")
        time.sleep(max(0.0, DISK_OUTAGE_S - (time.monotonic() - began)))
        assert county.queue_depth("hub.dead") == 0
    finally:
        disk.free()
    faults.assert_exactly_once(county, ids)
    assert "磁盘 已恢复" in county.log_text(host)
    assert county.queue_depth("hub.dead") == 0
