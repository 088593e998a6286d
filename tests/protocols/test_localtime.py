"""Local time: the display zone, explicit offsets, local midnight and the month before."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from docex.protocols import localtime


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    localtime.set_clock(None)
    localtime.configure(None)


def test_iso_has_an_explicit_local_offset() -> None:
    at = dt.datetime(2026, 11, 30, 16, 30, tzinfo=dt.UTC)
    assert localtime.iso(at) == "2026-12-01T00:30:00+08:00"
    assert localtime.iso(at.replace(tzinfo=None)) == "2026-12-01T00:30:00+08:00"  # stores hand back naive UTC
    assert localtime.show(at) == "2026-12-01 00:30:00"
    assert localtime.show("2026-11-30T16:30:00+00:00", seconds=False) == "2026-12-01 00:30"
    assert localtime.iso(None) is None and localtime.show(None) == ""


def test_days_start_at_local_midnight() -> None:
    start, end = localtime.day_range(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert start == dt.datetime(2026, 10, 31, 16, 0, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)  # --to is inclusive of its day


def test_the_clock_moves_across_a_month_end() -> None:
    localtime.set_clock(lambda: dt.datetime(2026, 11, 30, 15, 59, tzinfo=dt.UTC))
    assert localtime.today() == dt.date(2026, 11, 30)
    assert localtime.previous_month() == (dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    localtime.set_clock(lambda: dt.datetime(2026, 11, 30, 16, 1, tzinfo=dt.UTC))  # 1 December 00:01 in Shanghai
    assert localtime.today() == dt.date(2026, 12, 1)
    assert localtime.previous_month() == (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert localtime.previous_month(dt.date(2027, 1, 1)) == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


def test_the_zone_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    at = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    monkeypatch.setenv(localtime.ENV, "Europe/Berlin")
    assert localtime.iso(at) == "2026-07-01T14:00:00+02:00"
    localtime.configure("UTC")
    assert localtime.iso(at) == "2026-07-01T12:00:00+00:00" and localtime.label().startswith("UTC (UTC+00:00")
    with pytest.raises(ValueError, match="unknown time zone"):
        localtime.configure("Asia/Nowhere")
