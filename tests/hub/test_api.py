"""The hub's read API: plain HTTP only on localhost; HTTPS with the hub's server certificate
(from its CA, naming this machine) when asked and on every other address."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests

from docex.hub.api import ApiServer
from docex.hub.config import ApiConfig, KeyConfig
from docex.hub.context import HubContext
from docex.hub.network import api_scheme
from tests.conftest import Pki


def test_the_read_api_speaks_https_with_the_hubs_certificate(keyed_ctx: HubContext, pki: Pki) -> None:
    config = replace(keyed_ctx.config, api=ApiConfig(tls=True), keys=KeyConfig(insecure_no_passphrase=True))
    keyed_ctx.config = config
    pki.county.issue_server("hub", config.hub_dir, None, hub_prefix=config.prefix, ip_addresses=("127.0.0.1",),
                            key_name="server")
    server = ApiServer(keyed_ctx, "127.0.0.1", 0)
    server.start()
    try:
        url = f"https://127.0.0.1:{server.port}/healthz"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, timeout=10)  # the system does not know the information centre's CA
        assert requests.get(url, timeout=10, verify=str(pki.county.directory / "ca.crt")).json() == {"status": "ok"}
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)  # no plain HTTP beside it
    finally:
        server.stop()


def test_units_are_told_https_unless_the_api_is_on_localhost_only(keyed_ctx: HubContext) -> None:
    config = keyed_ctx.config
    assert api_scheme(config) == "http"
    assert api_scheme(replace(config, api=ApiConfig(host="0.0.0.0"))) == "https"
    assert api_scheme(replace(config, api=ApiConfig(tls=True))) == "https"
