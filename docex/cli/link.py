"""`docex link` (the bridge operator's commands at a hub) and `docex bridge` (the bridge
service that runs beside the child hub)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from docex.cli.logs import setup as setup_logging
from docex.cli.options import (
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)
from docex.protocols import glossary

HOME = click.option("--home", required=True, type=click.Path(file_okay=False), help="Hub home folder.")
LINK = click.option("--link", "name", help="Link name (default: the only link of this hub).")
STATE_ZH = glossary.zh(glossary.LINK_STATES)


def _open(home: str) -> tuple[Any, Any]:
    """The hub's config and database; audited operator actions are checkpointed."""
    from docex.hub.checkpoints import open_database
    from docex.hub.config import HubConfig

    config = HubConfig.load(home)
    return config, open_database(config)


@click.group()
def link() -> None:
    """上下级链路 Links to other exchanges: create, status, pause, resume, drain, routes."""


@link.command("create")
@HOME
@click.option("--child", "child_prefix", required=True, help="Prefix of the child hub, e.g. qingyuan.yangshan.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="BRIDGEDIR to write for the bridge.")
@click.option("--name", help="Link name (default: the child's last label, e.g. yangshan).")
@click.option("--child-ca", type=click.Path(exists=True, dir_okay=False),
              help="Trust the child exchange's CA (its ca.crt) for the units it certifies.")
@click.option("--rotate", is_flag=True, help="The link exists: issue the bridge a new login (the old one stops working).")
@json_option
@passphrase_options
@handles_errors
def create(home: str, child_prefix: str, out: str, name: str | None, child_ca: str | None, rotate: bool,
           as_json: bool, passphrase: PassphraseSource) -> None:
    """建立链路 On the parent hub: a link for a child hub, and the bridge's home (its broker login
    here, limited to our ingress and its own link queue, and its certificates)."""
    from docex.bridge.config import Side, write_bridge_home
    from docex.broker.topology import link_queue
    from docex.hub.links import create_child_link

    config, db = _open(home)
    kit = create_child_link(config, db, child_prefix=child_prefix, name=name, child_ca=child_ca, rotate=rotate)
    bridge = write_bridge_home(
        out, link=kit.link,
        parent=Side(prefix=kit.hub_prefix, name=kit.hub_name, url=kit.broker_url, user=kit.broker_user,
                    queue=link_queue(kit.link)),
        ca_pem=kit.ca_pem, hub_cert_pem=kit.hub_cert_pem, crl_pem=kit.crl_pem,
    )
    bridge = replace(bridge, parent=bridge.parent.with_tls(bridge.home, "parent", cert_pem=kit.tls_cert_pem,
                                                          key_pem=kit.tls_key_pem, broker_ca_pem=kit.broker_ca_pem))
    bridge = bridge.with_child(Side(prefix=child_prefix))
    bridge.save()
    cert_note = _issue_bridge_cert(config, passphrase, child_prefix, bridge.tls_dir)
    if as_json:
        echo_json({"ok": True, "link": kit.link, "child": child_prefix, "bridge_home": str(bridge.home),
                   "broker_user": kit.broker_user, "tls_login": bool(kit.tls_cert_pem), "certificate": cert_note,
                   "child_ca_trusted": bool(child_ca)})
        return
    click.echo(f"链路 {kit.link} 已建立 (link created): {child_prefix} <-> {config.prefix}")
    login = "a TLS certificate login" if kit.tls_cert_pem else "a broker password"
    click.echo(f"  bridge home  {bridge.home}  (holds {login}: hand it over like a key)")
    click.echo(f"  broker user  {kit.broker_user}: publish to docex.ingress, read {link_queue(kit.link)} only")
    click.echo(f"  certificate  {cert_note}")
    click.echo(f"  trust        {'child CA trusted: ' + child_ca if child_ca else 'child CA NOT trusted (add --child-ca)'}")
    click.echo(f"next, beside the child hub: docex bridge run --home {bridge.home} --hub CHILD_HUBDIR --trust-parent-ca")


def _issue_bridge_cert(config: Any, passphrase: PassphraseSource, child_prefix: str, out: Path) -> str:
    """The bridge's own certificate from the parent's CA (TLS client login in production)."""
    from docex.pki.ca import CertificateAuthority
    from docex.pki.errors import PkiError

    try:
        pw = passphrase.get() if (passphrase.file or passphrase.env or passphrase.insecure) else config.keys.passphrase()
        ca = CertificateAuthority.open(config.ca_dir, pw)
        cert = ca.issue_server(f"{child_prefix} bridge", out, pw)
    except PkiError as exc:
        return f"not issued here ({exc.message}); issue one with `docex pki` later"
    return f"{out / 'server.crt'} (serial {cert.serial_number:x}, from {config.name} CA)"


@link.command("status")
@HOME
@LINK
@json_option
@handles_errors
def status(home: str, name: str | None, as_json: bool) -> None:
    """链路状态 Connected or not and since when, backlog each way, oldest waiting document,
    throughput, last error."""
    from docex.hub import links

    config, db = _open(home)
    reports = links.status(config, db, name)
    if as_json:
        echo_json([r.to_dict() for r in reports])
        return
    if not reports:
        click.echo("本中心没有链路 (no links): docex link create / docex bridge run")
        return
    for line in render_status(reports):
        click.echo(line)


def render_status(reports: list[Any]) -> list[str]:
    """`docex link status` as text (also shown by the demo)."""
    out: list[str] = []
    for r in reports:
        where = "上级交换中心 (parent)" if r.role == "parent" else f"下级交换中心 {r.prefix} (child)"
        out.append(f"链路 {r.name}  {where}  状态 {STATE_ZH.get(r.state, r.state)} ({r.state})")
        if r.connected is None:
            conn = "未知 (broker statistics unavailable)"
        else:
            conn = (f"已连接 connected since {r.connected_since}" if r.connected else "未连接 NOT connected")
        out.append(f"  连接 connection    {conn}")
        if r.bridge:
            pumps = r.bridge.get("pumps", {})
            sides = "  ".join(
                f"{'上行 out' if d == 'out' else '下行 in'}: "
                f"{'通' if p.get('source_connected') and p.get('destination_connected') else '断'}"
                for d, p in pumps.items())
            out.append(f"  桥接 bridge        {'运行 running' if r.bridge.get('running') else '已停止 stopped'}"
                       f" (updated {r.bridge.get('updated_at')})  {sides}")
        out.append(f"  积压 backlog       发出 out {_n(r.backlog_out)} (queue) + {r.held_out} (held)   "
                   f"接收 in {_n(r.backlog_in)}")
        oldest = (f"{r.oldest_waiting_seconds:.0f} 秒 ({r.oldest_waiting_message_id})"
                  if r.oldest_waiting_seconds is not None else "无 none")
        out.append(f"  最早未送达 oldest   {oldest}")
        out.append(f"  吞吐 throughput    发出 out {_n(r.rate_out)}/s   接收 in {r.documents_in_5m} 份/5分钟"
                   f"   累计 total out {r.documents_out} / in {r.documents_in}")
        if r.last_error:
            e = r.last_error
            out.append(f"  最近错误 last error [{e.get('code')}] {e.get('message')} ({e.get('where')}, {e.get('at')})")
        else:
            out.append("  最近错误 last error 无 none")
        for d in r.remote_prefixes:
            out.append(f"  目录 directory     {d['prefix']} v{d['version']} ({d['units']} 个单位, {d['received_at']})")
    return out


def _n(value: Any) -> str:
    if value is None:
        return "?"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _state_command(action: str, help_text: str) -> click.Command:
    @HOME
    @LINK
    @json_option
    @handles_errors
    def command(home: str, name: str | None, as_json: bool) -> None:
        from docex.hub import links

        config, db = _open(home)
        link_name = links.resolve_name(db, name)
        released = None
        if action == "pause":
            links.pause(config, db, link_name)
        elif action == "drain":
            links.drain(config, db, link_name)
        else:
            released = links.resume(config, db, link_name)
        report = links.status(config, db, link_name)[0]
        if as_json:
            echo_json({"ok": True, "link": link_name, "state": report.state, "released": released})
            return
        text = {"pause": "已暂停: 桥接无法收发, 新文件在本中心暂存 (paused: new documents wait here)",
                "drain": "排空中: 积压继续送出, 新文件暂存, 排空后自动暂停 (draining, then paused)",
                "resume": f"已恢复: 放行暂存 {released} 条 (resumed, {released} released)"}[action]
        click.echo(f"链路 {link_name} {text}")

    command.__doc__ = help_text
    return click.command(action)(command)


link.add_command(_state_command("pause", "暂停链路 Stop the link at this hub (documents queue durably)."))
link.add_command(_state_command("resume", "恢复链路 Open the link again; what waited goes out."))
link.add_command(_state_command("drain", "排空后暂停链路 Let the backlog flow out, hold new documents, then pause."))


@link.command("routes")
@HOME
@json_option
@handles_errors
def routes_cmd(home: str, as_json: bool) -> None:
    """路由表 Which prefixes go where (the longest matching prefix wins)."""
    from dataclasses import asdict

    from docex.hub import links

    config, db = _open(home)
    rows = links.routes(config, db)
    if as_json:
        echo_json([asdict(r) for r in rows])
        return
    click.echo(f"{'前缀 prefix':32} {'去向 goes to':22} 说明 note")
    for r in rows:
        click.echo(f"{r.prefix:32} {r.goes_to:22} {r.note}")


# --- docex bridge -----------------------------------------------------------------------------
@click.group()
def bridge() -> None:
    """桥接服务 The bridge to the parent exchange (runs beside the child hub)."""


@bridge.command("run")
@click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="BRIDGEDIR (from `docex link create`).")
@click.option("--hub", "hub_home", type=click.Path(exists=True, file_okay=False),
              help="The child hub's home: the bridge's login there is created on first run.")
@click.option("--trust-parent-ca", is_flag=True, help="Make the child hub trust the parent exchange's CA (BRIDGEDIR/parent-ca.crt).")
@click.option("--metrics-port", type=int, help="Prometheus /metrics port (0: off; default from bridge.toml).")
@click.option("--workers", type=int, help="Envelopes in flight each way.")
@handles_errors
def run(home: str, hub_home: str | None, trust_parent_ca: bool, metrics_port: int | None, workers: int | None) -> None:
    """运行桥接服务 Run the bridge in the foreground: moves envelopes both ways, acknowledging only what
    the other hub confirmed; writes BRIDGEDIR/status.json for `docex link status`."""


    from docex.bridge.config import BridgeConfig
    from docex.bridge.service import run_forever

    setup_logging()
    config = BridgeConfig.load(home)
    if hub_home is not None:
        config = attach(config, hub_home, trust_parent_ca=trust_parent_ca)
    if workers:
        config = replace(config, workers=workers)
    run_forever(config, metrics_port=metrics_port)


def attach(config: Any, hub_home: str, *, trust_parent_ca: bool = False) -> Any:
    """Make sure the child hub has its parent link and the bridge a login there."""
    from docex.bridge.config import Side
    from docex.hub import links
    from docex.hub.models import Link
    from docex.protocols.errors import DocexError

    hub_config, db = _open(hub_home)
    if config.child.prefix and config.child.prefix != hub_config.prefix:
        raise DocexError("bad_address", f"this bridge is for {config.child.prefix}, the hub at {hub_home} is {hub_config.prefix}")
    if not (hub_config.prefix.startswith(config.parent.prefix + ".")):
        raise DocexError("bad_address", f"{hub_config.prefix} is not under the parent exchange {config.parent.prefix}")
    parent_ca = config.home / "parent-ca.crt" if trust_parent_ca else None
    with db.read() as s:
        row = s.get(Link, links.PARENT)
        attached = row is not None and config.child.ready and row.broker_user == config.child.user
    if attached:
        if parent_ca is not None:
            links.add_trust_anchor(hub_config, parent_ca, "link-parent-ca.crt")
        links.remember_bridge(db, links.PARENT, config.home)
        return config
    kit = links.attach_parent(hub_config, db, parent_ca=parent_ca, rotate=row is not None, bridge_dir=config.home)
    from docex.broker.topology import link_queue

    child = Side(prefix=hub_config.prefix, name=hub_config.name, url=kit.broker_url, user=kit.broker_user,
                 queue=link_queue(kit.link), hub_home=str(Path(hub_home).resolve()))
    config = config.with_child(child.with_tls(config.home, "child", cert_pem=kit.tls_cert_pem, key_pem=kit.tls_key_pem,
                                              broker_ca_pem=kit.broker_ca_pem))
    config.save()
    return config


@bridge.command("status")
@click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="BRIDGEDIR.")
@json_option
@handles_errors
def bridge_status(home: str, as_json: bool) -> None:
    """桥接状态 What the running bridge last reported (BRIDGEDIR/status.json)."""
    import json

    from docex.bridge.config import BridgeConfig
    from docex.protocols.errors import DocexError

    config = BridgeConfig.load(home)
    try:
        report = json.loads(config.status_path.read_text("utf-8"))
    except (OSError, ValueError):
        raise DocexError("no_status", f"the bridge has not reported yet ({config.status_path})") from None
    if as_json:
        echo_json(report)
        return
    click.echo(f"桥接 bridge {report['link']}: {report['child']} <-> {report['parent']}  "
               f"{'运行 running' if report['running'] else '已停止 stopped'}  "
               f"{'已连接 connected' if report['connected'] else '未连接 NOT connected'}  (updated {report['updated_at']})")
    for direction, p in report["pumps"].items():
        label = "上行 out (child->parent)" if direction == "out" else "下行 in (parent->child)"
        click.echo(f"  {label}: moved {p['moved']} ({p['bytes']} bytes), {p['per_second']}/s, backlog {_n(p['backlog'])}, "
                   f"errors {p['errors'] or 'none'}")
    if report.get("last_error"):
        e = report["last_error"]
        click.echo(f"  最近错误 last error [{e['code']}] {e['message']} ({e['where']}, {e['at']})")
