"""End-to-end fixtures: `network(...)` builds a real local network (its own vhost and
broker users, named with a unique tag) and tears it down with the module; `pg_url` is a
PostgreSQL database of the module's own, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docex.broker import Management
from docex.cli.localnet import MANAGEMENT_URL, LocalNetwork
from docex.hub.config import Limits
from docex.hub.db import Database
from docex.hub.units import CsvUnit
from tests.e2e.support import PREFIX, Network, county_units

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

NetworkFactory = Callable[..., Network]


def _sweep_broker(tag: str, rows: list[CsvUnit]) -> None:
    """Remove what a network that failed half-way left on the shared broker."""
    with Management(MANAGEMENT_URL, "guest", "guest") as mgmt:
        mgmt.delete_vhost(f"docex-{tag}-{PREFIX}")
        for user in [f"hub.{PREFIX}", f"admin.{PREFIX}", *(r.address for r in rows)]:
            mgmt.delete_user(f"{tag}.{user}")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkFactory]:
    """`network(units=12, database_url=None, max_envelope_bytes=None, trust=())` -> a
    Network with its hub home and agent homes written, nothing running yet."""
    made: list[Network] = []

    def make(units: int | list[CsvUnit] = 12, *, database_url: str | None = None,
             max_envelope_bytes: int | None = None, trust: tuple[str | Path, ...] = ()) -> Network:
        tag = f"e2e{uuid.uuid4().hex[:8]}"
        rows = county_units(units) if isinstance(units, int) else units
        root = tmp_path_factory.mktemp("net")
        try:
            net = LocalNetwork.create(root, PREFIX, rows, name="阳山县电子公文交换中心", tag=tag,
                                      database_url=database_url, trust=trust)
        except BaseException:
            _sweep_broker(tag, rows)
            raise
        if max_envelope_bytes is not None:
            net.config = net.config.with_changes(limits=Limits(max_envelope_bytes=max_envelope_bytes))
            net.config.save()
        network = Network(net, Database(net.config.database_url))
        made.append(network)
        return network

    try:
        yield make
    finally:
        for network in made:
            network.close()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the module (CREATE/DROP with autocommit)."""
    import psycopg

    name = f"docex_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
