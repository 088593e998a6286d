"""Where agents, browsers and the time-stamp clients reach the hub. `hub init` writes
loopback addresses unless told the hub machine's address on the county network
(`--public-host`); an agent home written with a loopback broker or TSA address only works
on the hub machine itself, so every command that writes agent homes says so."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from docex.hub.broker import first_agent_host
from docex.hub.config import HubConfig


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def api_scheme(config: HubConfig) -> str:
    """The read API and TSA speak plain HTTP only when they listen on localhost only; on any
    other address (or with `[api] tls`) HTTPS with the hub's server certificate."""
    return "https" if config.api.tls or not is_loopback(config.api.host) else "http"


def tsa_url(config: HubConfig) -> str:
    return f"{api_scheme(config)}://{first_agent_host(config)}:{config.api.port}/tsa"


def warnings(config: HubConfig) -> list[str]:
    """What would keep units on other machines from reaching this hub (empty: nothing)."""
    found = []
    if is_loopback(first_agent_host(config)):
        found.append(
            f"agent homes will point at {config.broker.agent_host} (loopback) for the broker and the TSA "
            f"({tsa_url(config)}): they work only on this machine. Set the hub's address on the county network: "
            "`docex hub network --home HUBDIR --public-host HOST` (or hub init --public-host), then re-issue homes "
            "(单位终端将连接回环地址，只能在本机使用)"
        )
    if is_loopback(config.api.host):
        found.append(
            f"the dashboard and TSA listen on {config.api.host} only: other machines cannot open them "
            "(set [api] host = \"0.0.0.0\", or --public-host) (监控页面与时间戳服务只在本机可达)"
        )
    return found


def with_public_host(config: HubConfig, host: str) -> HubConfig:
    """Agents reach the broker and the TSA at `host`; the API/dashboard/TSA listen on all
    interfaces so they can."""
    if not host or any(c in host for c in "/@ \t") or (":" in host and not _is_ip(host)):
        from docex.protocols.errors import DocexError

        raise DocexError("bad_address", f"--public-host wants a host name or IP address, not {host!r}")
    return config.with_changes(api=replace(config.api, host="0.0.0.0"), broker=replace(config.broker, agent_host=host))
