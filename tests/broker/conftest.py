"""Broker fixtures: every test gets its own vhost (and users), deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from docex.broker.management import Management
from docex.broker.settings import BrokerSettings, amqp_url
from docex.broker.topology import declare_hub_topology, hub_permissions, unit_permissions


@pytest.fixture(scope="session")
def management() -> Iterator[Management]:
    with Management() as mgmt:
        yield mgmt


@pytest.fixture
def vhost(management: Management) -> Iterator[str]:
    name = f"docex-test-{uuid.uuid4().hex[:8]}"
    management.create_vhost(name, description="docex broker test")
    management.set_permissions(name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        management.delete_vhost(name)


@pytest.fixture
def admin(vhost: str) -> BrokerSettings:
    """guest, full rights in the test vhost (plays the hub)."""
    return BrokerSettings(amqp_url("guest", "guest", vhost))


@pytest.fixture
def channel(admin: BrokerSettings) -> Iterator[BlockingChannel]:
    """A channel on the test vhost with the hub topology declared."""
    conn = pika.BlockingConnection(admin.parameters("docex-test-admin"))
    ch = conn.channel()
    declare_hub_topology(ch)
    try:
        yield ch
    finally:
        if conn.is_open:
            conn.close()


@dataclass(frozen=True)
class Login:
    """A broker user of its own, so a test can kill exactly its connections."""

    user: str
    password: str
    settings: BrokerSettings


@pytest.fixture
def unit_login(
    management: Management, vhost: str, admin: BrokerSettings
) -> Iterator[Callable[[str], Login]]:
    """Make a broker user for a unit address with exactly the unit's permissions."""
    made: list[str] = []

    def make(address: str) -> Login:
        login = _new_login(management, admin)
        made.append(login.user)
        management.set_permissions(vhost, login.user, *unit_permissions(address))
        return login

    try:
        yield make
    finally:
        for user in made:
            management.delete_user(user)


@pytest.fixture
def hub_login(management: Management, vhost: str, admin: BrokerSettings) -> Iterator[Login]:
    """A broker user with the hub's rights in the test vhost."""
    login = _new_login(management, admin)
    management.set_permissions(vhost, login.user, *hub_permissions())
    try:
        yield login
    finally:
        management.delete_user(login.user)


def _new_login(management: Management, admin: BrokerSettings) -> Login:
    user = f"docex-test-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    management.create_user(user, password)
    return Login(user, password, admin.for_login(user, password))
