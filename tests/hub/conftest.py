"""Hub unit-test fixtures: a migrated SQLite tracking store and a config that points at
it (no broker, no processes): for the pure logic of audit, states, routing, tracking and
reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docex.hub.config import BrokerConfig, HubConfig
from docex.hub.context import HubContext
from docex.hub.db import Database, migrate
from docex.hub.identity import HubIdentity
from docex.pki.keys import load_certificate, load_private_key
from tests.conftest import Pki

PREFIX = "qingyuan.yangshan"


@pytest.fixture
def hub_config(tmp_path: Path) -> HubConfig:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    return HubConfig(home=tmp_path, prefix=PREFIX, name="阳山县电子公文交换中心", database_url=url,
                     broker=BrokerConfig(url="amqp://hub:x@127.0.0.1:5672/docex-unit", vhost="docex-unit",
                                         user_prefix="t1."))


@pytest.fixture
def db(hub_config: HubConfig) -> Iterator[Database]:
    database = Database(hub_config.database_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def ctx(hub_config: HubConfig, db: Database) -> HubContext:
    """A hub context without keys: routing, origins, tracking and reports need none."""
    return HubContext(hub_config, db, identity=None)  # type: ignore[arg-type]


@pytest.fixture
def keyed_ctx(hub_config: HubConfig, db: Database, pki: Pki) -> HubContext:
    """A hub context with a real hub certificate (from the session's county CA): for
    what the hub signs, such as notices."""
    pki.county.issue_server("阳山县电子公文交换中心 hub", hub_config.hub_dir, None, hub_prefix=PREFIX)
    ca = pki.county.directory
    identity = HubIdentity(cert=load_certificate(hub_config.hub_dir / "server.crt"),
                           key=load_private_key(hub_config.hub_dir / "server.key", None),
                           ca_cert=pki.county.certificate, anchor_files=[ca / "ca.crt"], crl_files=[ca / "crl.pem"])
    return HubContext(hub_config, db, identity)
