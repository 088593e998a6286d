"""Fixtures for the security suite: the session PKI's units and hubs (from the protocol
tests), and the fuzz harness' summary of executions and crashers."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from docex.hub.config import ApiConfig, BrokerConfig, HubConfig, KeyConfig
from docex.hub.context import HubContext
from docex.hub.db import Database, migrate
from tests.protocols.conftest import a, b, c, county_hub, other_hub  # noqa: F401 - fixtures
from tests.security import fuzzing

STAFF, OTHER_STAFF, PASSWORD = "zhangsan", "lisi", "正确的口令-2011"
FAST_ROUNDS = 2000  # the login tests make many attempts; the format is the real one


def fast_hash(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, FAST_ROUNDS)
    return f"pbkdf2_sha256${FAST_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


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


# -- the hub's read API, in process (no broker): a migrated SQLite store and two staff logins
@pytest.fixture
def api_hub(tmp_path: Path) -> Iterator[HubContext]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    users = {STAFF: fast_hash(PASSWORD), OTHER_STAFF: fast_hash(PASSWORD)}
    config = HubConfig(home=tmp_path, prefix="qingyuan.yangshan", name="阳山县电子公文交换中心", database_url=url,
                       broker=BrokerConfig(url="amqp://hub:x@127.0.0.1:5672/docex-api", vhost="docex-api", user_prefix="t."),
                       api=ApiConfig(users=users), keys=KeyConfig(insecure_no_passphrase=True))
    db = Database(url)
    try:
        yield HubContext(config, db, identity=None)  # type: ignore[arg-type]
    finally:
        db.dispose()
