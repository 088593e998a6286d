"""A broker outage in the logs: the same retry warning once per window (with the count
left out when it shows again), other messages untouched, pika silent."""

from __future__ import annotations

import logging

from docex.cli.logs import RepeatFilter, setup


def _record(msg: str, level: int = logging.WARNING, name: str = "docex.agent.service") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_a_repeated_retry_warning_is_one_line_per_window() -> None:
    now = [0.0]
    f = RepeatFilter(window=300, clock=lambda: now[0])
    retry = "agent %s: broker unavailable (%s); retrying in %.1fs"
    shown = []
    for second in range(0, 600, 2):  # a ten-minute outage, a retry every two seconds
        now[0] = float(second)
        rec = _record(retry)
        if f.filter(rec):
            shown.append(rec.msg)
    assert len(shown) == 2 and "149 similar before" in shown[1]
    assert f.filter(_record("another warning"))
    assert f.filter(_record(retry, logging.INFO))  # info lines are never held back


def test_setup_silences_pika() -> None:
    setup()
    assert logging.getLogger("pika").getEffectiveLevel() == logging.CRITICAL


def test_setup_leaves_a_host_s_own_handlers_alone() -> None:
    # pytest's capture handler lives all session: a filter on it would hide repeated lines
    # from later tests (it did: a refusal test saw nothing).
    mine = logging.Handler()
    logging.getLogger().addHandler(mine)
    try:
        setup()
        assert not any(isinstance(f, RepeatFilter) for f in mine.filters)
    finally:
        logging.getLogger().removeHandler(mine)
