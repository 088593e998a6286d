"""Where agents reach the hub: loopback is recognised and warned about; a public host
moves the broker address and TSA URL for agents and opens the API on every interface."""

from __future__ import annotations

import pytest

from docex.hub import network
from docex.hub.config import HubConfig
from docex.protocols.errors import DocexError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"])
def test_loopback_is_recognised(host: str) -> None:
    assert network.is_loopback(host)


@pytest.mark.parametrize("host", ["10.44.0.2", "hub.yangshan.gov", "fd00::2"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not network.is_loopback(host)


def test_a_default_home_warns_and_a_public_host_does_not(hub_config: HubConfig) -> None:
    assert len(network.warnings(hub_config)) == 2 and "loopback" in network.warnings(hub_config)[0]
    public = network.with_public_host(hub_config, "10.44.0.2")
    assert network.warnings(public) == []
    assert (public.broker.agent_host, public.api.host) == ("10.44.0.2", "0.0.0.0")
    assert network.tsa_url(public) == "https://10.44.0.2:8470/tsa"  # off loopback the API speaks TLS
    with pytest.raises(DocexError):
        network.with_public_host(hub_config, "amqp://x@10.44.0.2/")
