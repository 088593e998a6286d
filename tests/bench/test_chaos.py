"""The bounded chaos soak (about five minutes): every kind of fault at least once while
documents flow to 20 units; in the end lost / duplicated / stuck = 0 / 0 / 0, byte for
byte, every receipt at its sender, the audit chain intact. The full run is
`python -m bench.chaos` (its figures are in the README)."""

from __future__ import annotations

import os

import pytest

from bench.chaos import FAULTS, ChaosConfig, soak

pytestmark = [
    pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow,
    # Five minutes of a loaded machine: CI runs it (CI=true); on a workstation, opt in.
    pytest.mark.skipif(not (os.environ.get("CI") or os.environ.get("DOCEX_CHAOS")),
                       reason="the bounded chaos soak runs in CI (CI=true) or with DOCEX_CHAOS=1"),
]


@pytest.mark.timeout(1500)
def test_bounded_chaos_soak_loses_duplicates_and_strands_nothing() -> None:
    cfg = ChaosConfig(documents=300, units=20, recipients=3, broadcast_every=120, fault_every=8.0,
                      hub_workers=2, agents_per_process=5, stop_seconds=10.0, db_outage_seconds=10.0,
                      disk_full_seconds=15.0, backlog=100, settle_seconds=420.0, seed=7, min_faults=len(FAULTS))
    report = soak(cfg, say=print)
    print(report.table())
    assert {f.kind for f in report.faults} == set(FAULTS)
    assert (report.lost, report.duplicated, report.stuck) == (0, 0, 0), report.table()
    assert report.corrupted == 0 and report.receipts_missing == 0, report.table()
    assert report.refusals == 0 and report.dead_letters == 0, report.table()
    assert report.audit_ok
