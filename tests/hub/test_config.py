"""The hub's settings file: a home written by a newer docex still loads."""

from __future__ import annotations

from pathlib import Path

from docex.hub.config import BrokerConfig, HubConfig
from tests.conftest import logged


def test_unknown_settings_are_ignored_with_a_warning(tmp_path: Path) -> None:
    config = HubConfig(home=tmp_path, prefix="qingyuan.yangshan", name="阳山县电子公文交换中心",
                       database_url=f"sqlite:///{tmp_path / 'hub.db'}",
                       broker=BrokerConfig(url="amqp://hub:pw@127.0.0.1:5672/docex", vhost="docex"))
    path = config.save()
    text = path.read_text("utf-8")
    assert "[api]\n" in text
    path.write_text(text.replace("[api]\n", "[api]\nsetting_from_a_newer_version = 10\n", 1), "utf-8")
    with logged("docex.hub.config") as seen:  # at the logger: other tests may stop propagation
        loaded = HubConfig.load(tmp_path)
    assert loaded.prefix == "qingyuan.yangshan" and loaded.api == config.api
    assert any("setting_from_a_newer_version" in line for line in seen), seen
