"""Local time as people read it (Asia/Shanghai unless configured) and the one clock.

Everything stored is aware UTC; everything shown (CLI, reports, API/JSON) is local time
with an explicit offset; calendar boundaries ("today", a date searched for, a report
month) start at local midnight. The zone comes from `DOCEX_TIMEZONE` or `configure()`
(the hub's `[display] timezone`). Tests move the clock with `set_clock()`."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "Asia/Shanghai"
ENV = "DOCEX_TIMEZONE"

_zone_name: str | None = None
_clock: Callable[[], dt.datetime] | None = None


def configure(zone: str | None) -> None:
    """Use this IANA zone for display (None: back to the environment/default)."""
    global _zone_name
    if zone:
        try:
            ZoneInfo(zone)  # refuse a misspelt zone now, not at the first timestamp
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r} (an IANA name such as Asia/Shanghai)") from exc
    _zone_name = zone or None


def zone_name() -> str:
    return _zone_name or os.environ.get(ENV) or DEFAULT_ZONE


def zone() -> dt.tzinfo:
    try:
        return ZoneInfo(zone_name())
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def set_clock(clock: Callable[[], dt.datetime] | None) -> None:
    """Tests: replace the wall clock (a callable returning an aware datetime); None restores it."""
    global _clock
    _clock = clock


def utcnow() -> dt.datetime:
    """The current instant, aware UTC (the one clock every part reads)."""
    if _clock is not None:
        return _clock().astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


def now() -> dt.datetime:
    """The current instant in local time."""
    return utcnow().astimezone(zone())


def today() -> dt.date:
    return now().date()


def local(value: dt.datetime) -> dt.datetime:
    """An instant in local time (naive values are taken as UTC, as the stores keep them)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(zone())


def iso(value: dt.datetime | None) -> str | None:
    """For JSON and APIs: local time, seconds, explicit offset (2026-12-01T09:30:00+08:00)."""
    return local(value).isoformat(timespec="seconds") if value is not None else None


def show(value: dt.datetime | str | None, *, seconds: bool = True) -> str:
    """For people: `2026-12-01 09:30:00` in local time ('' for nothing). Accepts ISO text."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        at = value
    return local(at).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def day_start(day: dt.date) -> dt.datetime:
    """Local midnight that begins `day`, as an aware UTC instant for queries."""
    return dt.datetime.combine(day, dt.time(), zone()).astimezone(dt.UTC)


def day_range(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight of `first`, local midnight after `last`): both days included."""
    return day_start(first), day_start(last + dt.timedelta(days=1))


def previous_month(day: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The calendar month before the one holding `day` (default: local today), as
    (first day, last day); on 1 December that is November."""
    day = day or today()
    first_of_this = day.replace(day=1)
    last = first_of_this - dt.timedelta(days=1)
    return last.replace(day=1), last


def label() -> str:
    """The zone as shown beside times, e.g. `Asia/Shanghai (UTC+08:00)`."""
    offset = now().strftime("%z")
    return f"{zone_name()} (UTC{offset[:3]}:{offset[3:]})"
