"""Least privilege on the broker: `hub init` keeps a dedicated administrator with a
generated password (never guest/guest, never the bootstrap login), and the hub's own login
has no management tag and permissions on its own vhost only: it sees no other hub."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
import requests

from docex.broker import BrokerSettings, Management, amqp_url
from docex.hub.config import HubConfig, KeyConfig
from docex.hub.setup import init_hub

pytestmark = pytest.mark.rabbitmq

API = "http://127.0.0.1:15672/api"
PREFIX = "qingyuan.yangshan"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubConfig]:
    tag = uuid.uuid4().hex[:8]
    vhost = f"docex-test-{tag}"
    try:
        yield init_hub(tmp_path_factory.mktemp("least") / "hub", PREFIX, vhost=vhost, user_prefix=f"t{tag}.",
                       passphrase=None, keys=KeyConfig(insecure_no_passphrase=True))
    finally:
        with Management() as mgmt:
            mgmt.delete_vhost(vhost)
            for user in requests.get(f"{API}/users", auth=("guest", "guest"), timeout=10).json():
                if user["name"].startswith(f"t{tag}."):
                    mgmt.delete_user(user["name"])


def _user(name: str) -> dict[str, object]:
    resp = requests.get(f"{API}/users/{requests.utils.quote(name, safe='')}", auth=("guest", "guest"), timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


def _permissions(name: str) -> list[dict[str, str]]:
    resp = requests.get(f"{API}/users/{requests.utils.quote(name, safe='')}/permissions", auth=("guest", "guest"), timeout=10)
    resp.raise_for_status()
    return list(resp.json())


def test_the_hub_keeps_a_dedicated_administrator_not_guest(hub: HubConfig) -> None:
    b = hub.broker
    assert b.management_user == f"{b.user_prefix}admin.{PREFIX}" and b.management_user != "guest"
    assert b.management_password != "guest" and len(b.management_password) >= 24
    toml = (hub.home / "docex.toml").read_text("utf-8")
    assert "guest" not in toml
    assert "administrator" in _user(b.management_user)["tags"]
    assert [p["vhost"] for p in _permissions(b.management_user)] == [b.vhost]
    # and it works: the hub's management client (units are added with it)
    with Management(b.management_url, b.management_user, b.management_password) as mgmt:
        assert mgmt.vhost_exists(b.vhost)


def test_the_hubs_own_login_sees_only_its_vhost(hub: HubConfig) -> None:
    settings = BrokerSettings(url=hub.broker.url)
    user, password = settings.user, pika.URLParameters(hub.broker.url).credentials.password
    assert _user(user)["tags"] in ([], "")
    assert [p["vhost"] for p in _permissions(user)] == [hub.broker.vhost]
    # no management API at all: not the vhost list, not the queues, not its own vhost's overview
    for path in ("/vhosts", "/queues", "/connections", f"/vhosts/{requests.utils.quote(hub.broker.vhost, safe='')}"):
        assert requests.get(API + path, auth=(user, password), timeout=10).status_code == 401, path
    # AMQP into another vhost (the default one, where other software lives) is refused
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        pika.BlockingConnection(BrokerSettings(url=amqp_url(user, password, "/")).parameters("docex-test-snoop")).close()
    # its own vhost works
    pika.BlockingConnection(settings.parameters("docex-test-hub")).close()


def test_init_on_a_broker_without_guest_rights_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    with pytest.raises(Exception):  # noqa: B017 - the broker refuses the bootstrap login
        init_hub(home, PREFIX, amqp_url="amqp://nobody:wrong@127.0.0.1:5672/", passphrase=None,
                 keys=KeyConfig(insecure_no_passphrase=True), vhost=f"docex-test-{uuid.uuid4().hex[:8]}")
    assert not home.exists()
