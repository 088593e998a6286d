"""Fixtures for the security suite: the session PKI's units and hubs (from the protocol
tests), and the fuzz harness' summary of executions and crashers."""

from __future__ import annotations

import pytest

from tests.protocols.conftest import a, b, c, county_hub, other_hub  # noqa: F401 - fixtures
from tests.security import fuzzing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    fuzzing.TARGET_COUNT[0] = max(1, sum(1 for i in items if i.module is not None and i.module.__name__.split(".")[-1].startswith("test_fuzz_")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not fuzzing.TALLIES:
        return
    mode = f"fuzz run of {fuzzing.FUZZ_SECONDS:.0f} s" if fuzzing.FUZZ_SECONDS > 0 else f"bounded ({fuzzing.BOUNDED_EXAMPLES} examples a target)"
    terminalreporter.section(f"fuzzers: {mode}")
    total, crashers = 0, 0
    for name, tally in sorted(fuzzing.TALLIES.items()):
        total += tally.executions
        crashers += len(tally.crashers)
        terminalreporter.write_line(f"{name:40s} {tally.executions:>10d} executions {len(tally.crashers):>3d} crashers {tally.seconds:>8.1f} s")
    terminalreporter.write_line(f"{'total':40s} {total:>10d} executions {crashers:>3d} crashers")
