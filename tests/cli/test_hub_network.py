"""`docex hub init --public-host`: agent homes carry the hub's county-network address for
the broker and the TSA; without it every command that writes homes warns about loopback;
`hub init` with RabbitMQ unreachable leaves nothing behind and says what to do."""

from __future__ import annotations

import json
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from docex.broker import Management
from docex.hub.config import HubConfig
from tests.cli.runner import refused, run

pytestmark = pytest.mark.rabbitmq

PREFIX = "qingyuan.wangluo"


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    vhost, user_prefix = f"docex-test-{tag}", f"t{tag}."
    yield vhost, user_prefix
    with Management() as mgmt:
        mgmt.delete_vhost(vhost)
        for user in requests.get("http://127.0.0.1:15672/api/users", auth=("guest", "guest"), timeout=10).json():
            if user["name"].startswith(user_prefix):
                mgmt.delete_user(user["name"])


def test_public_host_reaches_agent_homes(tmp_path: Path, names: tuple[str, str]) -> None:
    vhost, user_prefix = names
    home = tmp_path / "hub"
    result = run("hub", "init", "--home", home, "--prefix", PREFIX, "--vhost", vhost, "--user-prefix", user_prefix,
                 "--public-host", "10.44.0.2", "--insecure-no-passphrase")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    config = HubConfig.load(home)
    assert (config.broker.agent_host, config.api.host) == ("10.44.0.2", "0.0.0.0")
    added = run("unit", "add", "--home", home, "--address", f"{PREFIX}.zfb", "--name", "政府办",
                "--out", tmp_path / "zfb", "--insecure-no-passphrase")
    assert added.exit_code == 0, added.output
    agent = tomllib.loads((tmp_path / "zfb" / "docex.toml").read_text("utf-8"))
    broker_url = agent["broker"]["url"] if "broker" in agent else agent["broker_url"]
    assert "@10.44.0.2:" in broker_url and agent["seal"]["tsa_url"] == "https://10.44.0.2:8470/tsa"
    assert "loopback" not in added.stderr


def test_a_loopback_home_warns_and_can_be_changed(tmp_path: Path, names: tuple[str, str]) -> None:
    vhost, user_prefix = names
    home = tmp_path / "hub"
    result = run("hub", "init", "--home", home, "--prefix", PREFIX, "--vhost", vhost, "--user-prefix", user_prefix,
                 "--insecure-no-passphrase")
    assert result.exit_code == 0 and "loopback" in result.stderr, result.output
    check = run("hub", "network", "--home", home)
    assert check.exit_code == 0 and "loopback" in check.stderr
    changed = run("hub", "network", "--home", home, "--public-host", "hub.yangshan.gov", "--json")
    assert changed.exit_code == 0 and '"warnings": []' in changed.output, changed.output
    assert HubConfig.load(home).broker.agent_host == "hub.yangshan.gov"


def test_init_with_the_broker_down_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    args = ("hub", "init", "--home", home, "--prefix", PREFIX, "--management-url", "http://127.0.0.1:9",
            "--insecure-no-passphrase")
    line = refused(run(*args), "broker_unavailable")
    assert "run the same command again" in line and not home.exists()
    line = refused(run(*args), "broker_unavailable")  # the retry says the same, not "hub_exists"
    assert not home.exists()


def test_init_with_amqp_down_leaves_no_home_and_the_retry_succeeds(tmp_path: Path, names: tuple[str, str]) -> None:
    """The management API answers but AMQP does not (RabbitMQ half up): nothing in HUBDIR;
    the same command once AMQP answers makes the hub (the logins made the first time are reused)."""
    vhost, user_prefix = names
    home = tmp_path / "hub"
    args = ("hub", "init", "--home", home, "--prefix", PREFIX, "--vhost", vhost, "--user-prefix", user_prefix,
            "--public-host", "10.44.0.2", "--insecure-no-passphrase")
    line = refused(run(*args, "--amqp", "amqp://guest:guest@127.0.0.1:9/"), "broker_unavailable")
    assert "run the same command again" in line and not home.exists()
    again = run(*args, "--json")
    assert again.exit_code == 0, again.output
    made = json.loads(again.stdout)
    assert made["ok"] and made["warnings"] == [] and made["broker_for_agents"] == "10.44.0.2:5672"
    assert HubConfig.load(home).broker.vhost == vhost
