"""Approved terminals: `docex agent enroll` (on the unit's terminal), `docex unit requests`
and `docex unit approve` (at the information centre), `docex key passwd` (the unit's own
passphrase)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from docex.cli.options import (
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)

STATE_ZH = {"pending": "待批准", "approved": "已批准", "superseded": "已被取代"}


def _enroll_passphrase(source: PassphraseSource, *, confirm: bool) -> tuple[bytes | None, Any]:
    """The unit's own passphrase: from the options, $DOCEX_PASSPHRASE, or typed at the
    terminal. Returns it with the AgentKeys that tell the service where to find it."""
    from docex.agent.config import AgentKeys
    from docex.pki.errors import PkiError

    keys = AgentKeys(passphrase_env=source.env or "DOCEX_PASSPHRASE",
                     passphrase_file=str(Path(source.file).resolve()) if source.file else "",
                     insecure_no_passphrase=source.insecure)
    try:
        return source.get(), keys
    except PkiError:
        if not sys.stdin.isatty():
            raise
    typed = click.prompt("本单位密钥口令 the unit's key passphrase", hide_input=True, confirmation_prompt=confirm)
    return typed.encode(), keys


def _echo_pending(state: Any) -> None:
    click.echo(f"证书申请已提交 certificate request sent to {state.hub_url} for {state.address}")
    click.echo(f"  指纹 fingerprint  {state.fingerprint}")
    click.echo("  请将指纹告知信息中心核对后批准 read this fingerprint to the information centre; "
               "they approve with `docex unit approve ADDRESS --fingerprint ...`")


@click.command("enroll")
@click.option("--home", required=True, type=click.Path(file_okay=False), help="AGENTDIR to create on this terminal.")
@click.option("--address", help="The unit's address, e.g. qingyuan.yangshan.xxzx (first call).")
@click.option("--hub", "hub", help="The hub's API, HOST[:PORT] (default port 8470; HTTPS unless on this machine) "
              "or an https:// URL (first call).")
@click.option("--hub-ca", type=click.Path(exists=True, dir_okay=False), help="CA file to verify the hub's HTTPS certificate.")
@click.option("--ca-fingerprint", default="", help="SHA-256 of the county CA as the information centre announced it "
              "(checks --hub-ca and the CA the hub sends).")
@click.option("--wait", "wait_seconds", type=float, default=0.0, show_default=True,
              help="Seconds to wait for the approval (0: ask once; run again later).")
@json_option
@passphrase_options
@handles_errors
def enroll(home: str, address: str | None, hub: str | None, hub_ca: str | None, ca_fingerprint: str, wait_seconds: float,
           as_json: bool, passphrase: PassphraseSource) -> None:
    """在本终端申请证书 Enrol this terminal: make the unit's keys here (they never leave it),
    send certificate requests to the hub, show the fingerprint; once the information centre
    approved, fetch the certificates and write the agent home."""
    from docex.agent import enrollment
    from docex.protocols.errors import DocexError

    state = enrollment.load_state(home)
    if state is None:
        if not address or not hub:
            raise DocexError("unknown_request", "first enrolment: give --address and --hub")
        pw, keys = _enroll_passphrase(passphrase, confirm=True)
        state = enrollment.begin(home, address, hub, pw, keys, hub_ca=hub_ca or "", ca_fingerprint=ca_fingerprint)
        if not as_json:
            _echo_pending(state)
    else:
        pw = None
    deadline = time.monotonic() + wait_seconds
    while True:
        if pw is None and state.state != "approved":
            from docex.agent.config import AgentKeys

            stored = AgentKeys(state.passphrase_env, state.passphrase_file, state.insecure_no_passphrase)
            explicit = passphrase.file or passphrase.env or passphrase.insecure
            pw = passphrase.get() if explicit else _stored_passphrase(stored)
        state = enrollment.complete(home, pw, ca_fingerprint=ca_fingerprint)
        if state.state == "approved" or time.monotonic() >= deadline:
            break
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
    if as_json:
        echo_json({"address": state.address, "state": state.state, "fingerprint": state.fingerprint,
                   "home": str(Path(home).resolve())})
        return
    if state.state == "approved":
        click.echo(f"已批准 approved: {state.address}'s terminal is ready ({Path(home).resolve()})")
        click.echo(f"  next: docex agent run --home {home}")
    else:
        click.echo(f"等待批准 waiting for approval (fingerprint {state.fingerprint}); run `docex agent enroll --home {home}` again")


def _stored_passphrase(keys: Any) -> bytes | None:
    from docex.pki.errors import PkiError

    try:
        passphrase: bytes | None = keys.passphrase()
        return passphrase
    except PkiError:
        if not sys.stdin.isatty():
            raise
        return click.prompt("本单位密钥口令 the unit's key passphrase", hide_input=True).encode()


# --- at the information centre ------------------------------------------------------------------
HUB_HOME = click.option("--home", required=True, type=click.Path(file_okay=False), help="Hub home folder.")


@click.command("requests")
@HUB_HOME
@click.option("--all", "show_all", is_flag=True, help="Also approved and superseded requests.")
@json_option
@handles_errors
def requests_(home: str, show_all: bool, as_json: bool) -> None:
    """待批准的终端证书申请 Terminals' certificate requests waiting for approval."""
    from docex.hub import enrollment
    from docex.hub.config import HubConfig
    from docex.hub.db import Database
    from docex.hub.models import Unit
    from docex.protocols.localtime import show

    config = HubConfig.load(home)
    rows = enrollment.all_requests(config) if show_all else enrollment.pending(config)
    db = Database(config.database_url)
    try:
        with db.read() as s:
            names = {r.address: (u.name if (u := s.get(Unit, r.address)) is not None else "") for r in rows}
    finally:
        db.dispose()
    if as_json:
        echo_json([{**r.public(), "name": names[r.address], "registered": bool(names[r.address])} for r in rows])
        return
    for r in rows:
        who = f"{names[r.address]} (已登记, 将替换现有终端 replaces its terminal)" if names[r.address] else "新单位 new unit"
        click.echo(f"{show(r.submitted_at)}  {r.address:32} {STATE_ZH.get(r.state, r.state)}  指纹 {r.fingerprint}  "
                   f"{who}  来自 {r.peer}")
    click.echo(f"{len(rows)} request(s)")


@click.command("approve")
@HUB_HOME
@click.argument("address")
@click.option("--fingerprint", required=True, help="The fingerprint the unit read out (from its `docex agent enroll`).")
@click.option("--name", default="", help="The unit's name (a new unit only).")
@click.option("--kind", default="")
@click.option("--building", default="")
@click.option("--phase", default="electronic", type=click.Choice(["pilot", "dual_track", "electronic"]))
@json_option
@passphrase_options
@handles_errors
def approve(home: str, address: str, fingerprint: str, name: str, kind: str, building: str, phase: str, as_json: bool,
            passphrase: PassphraseSource) -> None:
    """批准终端 Issue the certificates of the unit's pending request with this fingerprint.
    A unit that has a terminal gets this one instead: the old one's certificates are
    revoked and its access ends."""
    from docex.hub import enrollment
    from docex.hub.config import HubConfig
    from docex.hub.db import Database
    from docex.hub.identity import HubIdentity
    from docex.pki.ca import CertificateAuthority

    config = HubConfig.load(home)
    pw = passphrase.get() if (passphrase.file or passphrase.env or passphrase.insecure) else config.keys.passphrase()
    db = Database(config.database_url)
    try:
        identity = HubIdentity.load(config, pw)
        ca = CertificateAuthority.open(config.ca_dir, pw)
        request, replaced = enrollment.approve(config, db, identity, ca, address, fingerprint, name=name, kind=kind,
                                               building=building, phase=phase, actor=_actor())
    finally:
        db.dispose()
    if as_json:
        echo_json({"address": address, "request": request.id, "replaced": replaced, "fingerprint": request.fingerprint})
        return
    click.echo(f"已批准 approved: {address} ({request.result.get('name')}), fingerprint {request.fingerprint}")
    if replaced:
        click.echo("  原终端已停用 the unit's previous terminal is replaced: its certificates are revoked, its login ends")
    click.echo("  the terminal fetches its certificates with `docex agent enroll --home AGENTDIR`")


def _actor() -> str:
    return f"information-centre:{os.environ.get('USER', '') or 'operator'}"


# --- the unit's passphrase ----------------------------------------------------------------------
@click.group()
def key() -> None:
    """密钥口令 The unit's key passphrase."""


@key.command("passwd")
@click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="Agent home (AGENTDIR).")
@click.option("--new-passphrase-file", type=click.Path(exists=True, dir_okay=False), help="File holding the new passphrase.")
@click.option("--new-passphrase-env", metavar="VAR", help="Environment variable holding the new passphrase.")
@json_option
@passphrase_options
@handles_errors
def passwd(home: str, new_passphrase_file: str | None, new_passphrase_env: str | None, as_json: bool,
           passphrase: PassphraseSource) -> None:
    """修改口令 Change the passphrase the unit's private keys are encrypted with."""
    from docex.agent.config import AgentConfig
    from docex.agent.keys import change_passphrase
    from docex.pki.keys import resolve_passphrase
    from docex.protocols.errors import DocexError

    config = AgentConfig.load(home)
    explicit = passphrase.file or passphrase.env or passphrase.insecure
    old = passphrase.get() if explicit else _stored_passphrase(config.keys)
    if new_passphrase_file or new_passphrase_env:
        new = resolve_passphrase(passphrase_file=new_passphrase_file, passphrase_env=new_passphrase_env)
    elif sys.stdin.isatty():
        new = click.prompt("新口令 new passphrase", hide_input=True, confirmation_prompt=True).encode()
    else:
        raise DocexError("no_passphrase", "give the new passphrase with --new-passphrase-file or --new-passphrase-env")
    changed = change_passphrase(config.home, old, new)
    if as_json:
        echo_json({"ok": True, "changed": list(changed)})
        return
    click.echo(f"口令已修改 passphrase changed for {', '.join(changed)}; "
               "give the agent service the new one ($DOCEX_PASSPHRASE or its passphrase file)")
