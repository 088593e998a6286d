"""The demo's approved terminal: one unit enrols the way a real terminal does (keys made
on the terminal, certificate requests to the hub's API, the information centre compares
the fingerprint and approves), then runs and exchanges like the others."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click

NEW_UNIT = ("qingyuan.yangshan.dag", "阳山县档案馆")


def hub_api_url(net: Any, timeout: float = 30.0) -> str:
    """The running hub's API as its log announced it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = net.logs["hub"].read_text("utf-8", errors="replace") if "hub" in net.logs else ""
        match = re.search(r"API (https?://[^/\s]+)/", text)
        if match:
            return match.group(1)
        time.sleep(0.2)
    raise click.ClickException("the hub did not announce its API")


def enrol_terminal(net: Any, db: Any, address: str = NEW_UNIT[0], name: str = NEW_UNIT[1]) -> Path:
    """`docex agent enroll` on the terminal, `docex unit requests` and `docex unit approve`
    at the information centre, `docex agent enroll` again: the unit's home is written."""
    from docex.agent import enrollment as terminal
    from docex.agent.config import AgentKeys
    from docex.hub import enrollment as centre
    from docex.hub.identity import HubIdentity
    from docex.pki.ca import CertificateAuthority

    home = net.root / "agents" / address
    url = hub_api_url(net)
    state = terminal.begin(home, address, url, None, AgentKeys(insecure_no_passphrase=True))
    click.echo(f"   终端 {address}: docex agent enroll --hub {url}  -> 指纹 fingerprint {state.fingerprint}")
    for request in centre.pending(net.config):
        click.echo(f"   信息中心 docex unit requests: {request.address} 指纹 {request.fingerprint} 来自 {request.peer}")
    request, _ = centre.approve(net.config, db, HubIdentity.load(net.config, None),
                                CertificateAuthority.open(net.config.ca_dir, None), address, state.fingerprint,
                                name=name, kind="agency", actor="information-centre:demo")
    click.echo(f"   信息中心 docex unit approve {address} --fingerprint {request.fingerprint}: 已批准 approved")
    terminal.complete(home, None)
    click.echo(f"   终端 docex agent enroll: 证书已取回 certificates fetched; home {home}")
    net.agents[address] = home
    return home
