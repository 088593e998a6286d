"""`docex hub`, `docex unit`, `docex audit`, `docex track`, `docex documents`: the
information centre's commands."""

from __future__ import annotations

import datetime as dt
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
from docex.protocols import glossary, localtime

STATE_ZH = glossary.zh(glossary.STATES)
HOME = click.option("--home", required=True, type=click.Path(file_okay=False), help="Hub home folder.")


def _open(home: str) -> tuple[Any, Any]:
    """The hub's config and database; audited operator actions are checkpointed."""
    from docex.hub.checkpoints import open_database
    from docex.hub.config import HubConfig

    config = HubConfig.load(home)
    return config, open_database(config)


def _passphrase(config: Any, source: PassphraseSource) -> bytes | None:
    """Explicit options win; otherwise the hub's configured source."""
    if source.file or source.insecure or source.env:
        return source.get()
    return config.keys.passphrase()


def _write_agent_home(prov: Any, config: Any) -> None:
    from docex.agent.config import AgentKeys, SealConfig, write_home

    write_home(
        prov.keys_dir, address=prov.address, name=prov.name, hub_prefix=prov.hub_prefix, broker_url=prov.broker_url,
        ca_pem=prov.ca_pem, anchors_pem=prov.anchors_pem, crl_pem=prov.crl_pem, directory_der=prov.directory_der,
        keys=AgentKeys(passphrase_env=config.keys.passphrase_env, passphrase_file=config.keys.passphrase_file,
                       insecure_no_passphrase=config.keys.insecure_no_passphrase),
        seal=SealConfig(tsa_url=prov.tsa_url), broker_ca_pem=prov.broker_ca_pem,
    )


def _warn_network(config: Any) -> None:
    from docex.hub import network

    for warning in network.warnings(config)[:1]:  # the agent-home one
        click.echo(f"注意 warning: {warning}", err=True)


# --- docex hub ------------------------------------------------------------------------------
@click.group()
def hub() -> None:
    """交换中心 The hub: initialise, run, manage staff logins, reports."""


@hub.command()
@HOME
@click.option("--prefix", required=True, help="Address prefix this hub owns, e.g. qingyuan.yangshan.")
@click.option("--name", help="Display name, e.g. 阳山县公文交换中心.")
@click.option("--amqp", "amqp_url", default="amqp://guest:guest@127.0.0.1:5672/", show_default=True,
              help="An administrator login to RabbitMQ (used to create the hub's own users).")
@click.option("--management-url", default="http://127.0.0.1:15672", show_default=True)
@click.option("--vhost", help="RabbitMQ vhost (default docex-PREFIX).")
@click.option("--db", "db_url", help="Database URL (default SQLite in HOME; e.g. postgresql+psycopg://postgres@127.0.0.1/test).")
@click.option("--import-ca", type=click.Path(exists=True, file_okay=False), help="Use an existing CA folder instead of creating one.")
@click.option("--trust", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Another CA to trust (e.g. the city's ca.crt); repeat.")
@click.option("--user-prefix", default="", help="Prefix for broker user names (several hubs on one test broker).")
@click.option("--public-host", help="本机在县电子政务网上的地址 The hub machine's address on the county network: "
              "agents reach the broker and TSA there, the dashboard listens on all interfaces. Without it: loopback only.")
@json_option
@passphrase_options
@handles_errors
def init(home: str, prefix: str, name: str | None, amqp_url: str, management_url: str, vhost: str | None,
         db_url: str | None, import_ca: str | None, trust: tuple[str, ...], user_prefix: str, public_host: str | None,
         as_json: bool, passphrase: PassphraseSource) -> None:
    """创建交换中心 Create a hub home: config, CA, server certificate, database, broker vhost and
    topology. Nothing is left behind if it fails (e.g. RabbitMQ down): fix the cause, run it again."""
    from docex.broker.errors import BrokerError
    from docex.hub import network
    from docex.hub.config import KeyConfig
    from docex.hub.setup import init_hub
    from docex.protocols.errors import DocexError

    keys = KeyConfig(passphrase_env=passphrase.env or "DOCEX_PASSPHRASE", passphrase_file=passphrase.file or "",
                     insecure_no_passphrase=passphrase.insecure)
    try:
        config = init_hub(home, prefix, name=name, amqp_url=amqp_url, management_url=management_url, vhost=vhost,
                          database_url=db_url, passphrase=passphrase.get(), keys=keys, import_ca=import_ca,
                          trust=trust, user_prefix=user_prefix, public_host=public_host)
    except BrokerError as exc:
        raise DocexError("broker_unavailable", f"{exc}. 未创建任何文件 nothing was written to {home}: start RabbitMQ "
                                               "(systemctl start rabbitmq-server) and run the same command again") from None
    warnings = network.warnings(config)
    if as_json:
        echo_json({"ok": True, "prefix": config.prefix, "home": str(config.home),
                   "config": str(config.home / "docex.toml"), "ca": str(config.ca_dir / "ca.crt"),
                   "vhost": config.broker.vhost, "database": config.database_url.split("@")[-1],
                   "broker_for_agents": f"{config.broker.agent_host}:{config.broker.agent_port}",
                   "tsa_url": network.tsa_url(config),
                   "dashboard": f"{network.api_scheme(config)}://{config.api.host}:{config.api.port}/",
                   "warnings": warnings})
        return
    click.echo(f"hub {config.prefix} ready in {config.home}")
    click.echo(f"  config   {config.home / 'docex.toml'}")
    click.echo(f"  CA       {config.ca_dir / 'ca.crt'}")
    click.echo(f"  broker   vhost {config.broker.vhost}")
    click.echo(f"  database {config.database_url.split('@')[-1]}")
    click.echo(f"  agents   broker {config.broker.agent_host}:{config.broker.agent_port}, TSA {network.tsa_url(config)}")
    click.echo(f"  dashboard {network.api_scheme(config)}://{config.api.host}:{config.api.port}/")
    for warning in warnings:
        click.echo(f"注意 warning: {warning}", err=True)
    if not config.broker.tls_port:
        click.echo(f"next: sudo docex broker tls --home {config.home}  (TLS and certificate logins on the broker, "
                   "before registering units)")
    click.echo("next: docex hub user add (dashboard login), docex unit import / unit add, docex hub run")


@hub.command("network")
@HOME
@click.option("--public-host", help="Set the hub machine's address on the county network (agents, dashboard, TSA).")
@json_option
@handles_errors
def network_command(home: str, public_host: str | None, as_json: bool) -> None:
    """网络设置检查 Show (or set) where agents and browsers reach this hub, and warn about
    loopback addresses. Agent homes written before a change keep the old address."""
    from docex.hub import network
    from docex.hub.config import HubConfig

    config = HubConfig.load(home)
    if public_host:
        config = network.with_public_host(config, public_host)
        config.save()
    warnings = network.warnings(config)
    if as_json:
        echo_json({"ok": not warnings, "broker_for_agents": f"{config.broker.agent_host}:{config.broker.agent_port}",
                   "tsa_url": network.tsa_url(config), "api_listen": f"{config.api.host}:{config.api.port}",
                   "warnings": warnings})
        return
    click.echo(f"单位终端连接 agents reach the broker at {config.broker.agent_host}:{config.broker.agent_port}")
    click.echo(f"时间戳服务 TSA {network.tsa_url(config)}")
    click.echo(f"监控页面 dashboard/API listens on {config.api.host}:{config.api.port}")
    for warning in warnings:
        click.echo(f"注意 warning: {warning}", err=True)
    if not warnings:
        click.echo("网络设置正常 network settings reachable from other machines")


@hub.command()
@HOME
@click.option("--workers", default=1, show_default=True, help="Intake processes competing for the ingress queue.")
@click.option("--api-port", type=int, help="Read API / dashboard port (default from config, 8470).")
@click.option("--metrics-port", type=int, help="Prometheus /metrics port (default from config; 0 off).")
@passphrase_options
@handles_errors
def run(home: str, workers: int, api_port: int | None, metrics_port: int | None, passphrase: PassphraseSource) -> None:
    """运行交换中心 Run the hub service in the foreground (intake, routing, receipts, clocks, API)."""
    from docex.hub.config import HubConfig
    from docex.hub.service import RunOptions, run_forever

    setup_logging()
    config = HubConfig.load(home)
    run_forever(home, _passphrase(config, passphrase),
                RunOptions(workers=workers, api_port=api_port, metrics_port=metrics_port))


@hub.command("backup")
@HOME
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The archive to write (.tar.gz).")
@json_option
@handles_errors
def backup_command(home: str, output: str, as_json: bool) -> None:
    """备份交换中心 Back up the hub: configuration, CA and keys, audit checkpoints and the whole
    tracking database, in one archive (keep it as safe as the CA key: it holds it)."""
    from docex.hub.backup import backup
    from docex.hub.config import HubConfig

    config = HubConfig.load(home)
    info = backup(config, output, progress=None if as_json else lambda t: click.echo(f"  {t}", err=True))
    if as_json:
        echo_json({"ok": True, "output": str(info.path), "revision": info.revision, "rows": info.rows})
        return
    click.echo(f"备份完成 backup written: {info.path} (schema {info.revision}, {sum(info.rows.values())} rows)")


@hub.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--home", required=True, type=click.Path(file_okay=False), help="A new hub home to restore into.")
@click.option("--db", "db_url", help="The new database (default SQLite in HOME; required if the backup came from PostgreSQL).")
@click.option("--no-broker", is_flag=True, help="Do not touch RabbitMQ (restore the files and database only).")
@json_option
@handles_errors
def restore_command(archive: str, home: str, db_url: str | None, no_broker: bool, as_json: bool) -> None:
    """恢复交换中心 Restore a backup into a new hub home (and a new, empty database), upgrade its
    schema to this release, and re-create the vhost, the hub's login and the queues."""
    from docex.hub import audit as hub_audit
    from docex.hub.backup import ensure_broker, restore
    from docex.hub.db import Database
    from docex.hub.models import Link, Unit

    config, counts = restore(archive, home, database_url=db_url)
    db = Database(config.database_url)
    with db.read() as s:
        rows = s.query(Unit).all()
        units = [(u.address, u.broker_user) for u in rows]
        disabled = frozenset(u.address for u in rows if u.state == "disabled")
        link_rows = s.query(Link).all()
        links = [link.name for link in link_rows]
        link_users = {link.name: link.broker_user for link in link_rows if link.state != "paused"}  # paused: no rights
        chain = hub_audit.verify_chain(s)
    missing = [] if no_broker else ensure_broker(config, units, links, disabled=disabled, link_users=link_users)
    with db.session() as s:
        hub_audit.append(s, "information-centre", "hub.restore", str(Path(archive).name), rows=sum(counts.values()))
    db.dispose()
    if as_json:
        echo_json({"ok": chain.ok, "home": str(config.home), "rows": counts, "audit_entries": chain.entries,
                   "audit_ok": chain.ok, "units_without_broker_login": missing})
        return
    click.echo(f"恢复完成 restored into {config.home}: {sum(counts.values())} rows, "
               f"{len(units)} unit(s), {len(links)} link(s)")
    click.echo(f"审计链 audit chain: {'完整 intact' if chain.ok else '损坏 BROKEN'} ({chain.entries} entries)")
    for address in missing:
        click.echo(f"注意 warning: {address} has no broker login on this broker: re-issue its agent home", err=True)
    click.echo("next: docex hub run --home " + str(config.home))


@hub.group()
def user() -> None:
    """监控页面登录账号 Dashboard logins of the information centre's staff."""


def _save_users(config: Any, users: dict[str, str]) -> None:
    config.with_changes(api=replace(config.api, users=users)).save()


def _read_password(password_file: str | None) -> str:
    if password_file:
        return Path(password_file).read_text("utf-8").strip()
    return str(click.prompt("password 口令", hide_input=True, confirmation_prompt=True))


@user.command("add")
@HOME
@click.option("--name", required=True)
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), help="Read the password from a file (else prompt).")
@json_option
@handles_errors
def user_add(home: str, name: str, password_file: str | None, as_json: bool) -> None:
    """添加登录 Add (or reset) a staff login for the dashboard and read API."""
    from docex.hub.api import hash_password
    from docex.hub.config import HubConfig

    config = HubConfig.load(home)
    users = dict(config.api.users)
    existed = name in users
    users[name] = hash_password(_read_password(password_file))
    _save_users(config, users)
    if as_json:
        echo_json({"ok": True, "user": name, "replaced": existed})
        return
    click.echo(f"登录已保存 login {name} saved")


@user.command("passwd")
@HOME
@click.option("--name", required=True)
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), help="Read the new password from a file (else prompt).")
@json_option
@handles_errors
def user_passwd(home: str, name: str, password_file: str | None, as_json: bool) -> None:
    """修改口令 Change an existing staff login's password."""
    from docex.hub.api import hash_password
    from docex.hub.config import HubConfig
    from docex.protocols.errors import DocexError

    config = HubConfig.load(home)
    users = dict(config.api.users)
    if name not in users:
        raise DocexError("unknown_user", f"no dashboard login {name!r} (docex hub user list)")
    users[name] = hash_password(_read_password(password_file))
    _save_users(config, users)
    if as_json:
        echo_json({"ok": True, "user": name})
        return
    click.echo(f"口令已修改 password of {name} changed")


@user.command("remove")
@HOME
@click.option("--name", required=True)
@json_option
@handles_errors
def user_remove(home: str, name: str, as_json: bool) -> None:
    """删除登录 Remove a staff login."""
    from docex.hub.config import HubConfig
    from docex.protocols.errors import DocexError

    config = HubConfig.load(home)
    users = dict(config.api.users)
    if users.pop(name, None) is None:
        raise DocexError("unknown_user", f"no dashboard login {name!r} (docex hub user list)")
    _save_users(config, users)
    if as_json:
        echo_json({"ok": True, "user": name, "removed": True})
        return
    click.echo(f"登录已删除 login {name} removed")


@user.command("list")
@HOME
@json_option
@handles_errors
def user_list(home: str, as_json: bool) -> None:
    """登录列表 The staff logins (names only; passwords are kept hashed)."""
    from docex.hub.config import HubConfig

    names = sorted(HubConfig.load(home).api.users)
    if as_json:
        echo_json(names)
        return
    for name in names:
        click.echo(name)
    click.echo(f"{len(names)} login(s)")


@hub.command()
@HOME
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="最后一天（含当天）Last day, inclusive: --from 2026-01-01 --to 2026-12-31 is the whole year.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default HOME/reports).")
@json_option
@passphrase_options
@handles_errors
def report(home: str, start: dt.datetime, end: dt.datetime, out: str | None, as_json: bool, passphrase: PassphraseSource) -> None:
    """年度考核报告 Usage report per unit for the yearly assessment (CSV, HTML, JSON)."""
    from docex.hub.reports import build_report, write_report
    from docex.hub.service import make_context

    config, db = _open(home)
    ctx = make_context(config, _passphrase(config, passphrase))
    if as_json:
        echo_json(build_report(ctx, start.date(), end.date()))
        return
    path = write_report(ctx, start.date(), end.date(), Path(out) if out else None)
    click.echo(f"报告已生成 report written: {path} (+ .xlsx, .pdf, .html, .json)")


# --- docex unit -----------------------------------------------------------------------------
@click.group()
def unit() -> None:
    """单位管理 Units: register, import, list, disable, enable, rollout phase."""


@unit.command("add")
@HOME
@click.option("--address", required=True)
@click.option("--name", required=True)
@click.option("--kind", default="")
@click.option("--building", default="")
@click.option("--phase", default="electronic", type=click.Choice(["pilot", "dual_track", "electronic"]))
@click.option("--existing-keys", type=click.Path(exists=True, file_okay=False), help="Keep certificates another trusted CA issued (sign.crt/key, enc.crt/key).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="AGENTDIR to write for the unit's terminal.")
@json_option
@passphrase_options
@handles_errors
def unit_add(home: str, address: str, name: str, kind: str, building: str, phase: str, existing_keys: str | None,
             out: str, as_json: bool, passphrase: PassphraseSource) -> None:
    """登记单位 Register one unit and write its agent home."""
    from docex.hub.units import add_unit
    from docex.pki.ca import CertificateAuthority

    config, db = _open(home)
    pw = _passphrase(config, passphrase)
    from docex.hub.identity import HubIdentity

    identity = HubIdentity.load(config, pw)
    ca = CertificateAuthority.open(config.ca_dir, pw)
    prov = add_unit(config, db, identity, ca, address=address, name=name, out_dir=out, passphrase=pw, kind=kind,
                    building=building, phase=phase, existing_keys=existing_keys)
    _write_agent_home(prov, config)
    if as_json:
        from docex.hub import network

        echo_json({"ok": True, "address": address, "name": name, "agent_home": str(Path(out).resolve()),
                   "warnings": network.warnings(config)[:1]})
        return
    click.echo(f"{address} ({name}) registered; agent home: {Path(out).resolve()}")
    _warn_network(config)


SKIP_ZH = {
    "already_registered": "已登记，跳过", "outside_prefix": "不属于本中心，跳过", "not_selected": "未选中，跳过",
    "duplicate_row": "重复行，拒绝", "bad_csv": "格式错误，拒绝", "bad_address": "地址格式错误，拒绝",
}


@unit.command("import")
@HOME
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="One AGENTDIR per unit is written under it.")
@click.option("--existing-keys-root", type=click.Path(exists=True, file_okay=False), help="Folder with ADDRESS/ subfolders of city-issued keys.")
@click.option("--limit", type=int, help="Only the first N rows.")
@click.option("--only", multiple=True, help="Only these addresses; repeat.")
@click.option("--dry-run", is_flag=True, help="只检查不登记 Only show what would be registered and what skipped.")
@json_option
@passphrase_options
@handles_errors
def unit_import(home: str, csv_file: str, out: str, existing_keys_root: str | None, limit: int | None,
                only: tuple[str, ...], dry_run: bool, as_json: bool, passphrase: PassphraseSource) -> None:
    """批量登记单位 Register every unit of a unit list (CSV as Excel/WPS save it: UTF-8,
    GBK/GB18030; comma, semicolon or tab; columns address,name[,kind,building,existing_certificate]
    or 地址,名称[,类型,楼宇,现有证书]). Every row not registered is listed with its line and reason."""
    from docex.hub import unit_csv
    from docex.hub.units import list_units

    config, db = _open(home)
    units = unit_csv.read(csv_file)
    todo, skipped = unit_csv.plan(units, prefix=config.prefix, known=[u.address for u in list_units(db)])
    if only:
        skipped += [unit_csv.SkippedRow(r.line, r.address, "not_selected", "not in --only") for r in todo
                    if r.address not in only]
        todo = [r for r in todo if r.address in only]
    if limit is not None:
        skipped += [unit_csv.SkippedRow(r.line, r.address, "not_selected", "beyond --limit") for r in todo[limit:]]
        todo = todo[:limit]
    done: list[Any] = []
    if not dry_run and todo:
        from docex.hub.identity import HubIdentity
        from docex.hub.units import import_csv, refresh_agent_directories
        from docex.pki.ca import CertificateAuthority

        pw = _passphrase(config, passphrase)
        identity = HubIdentity.load(config, pw)
        ca = CertificateAuthority.open(config.ca_dir, pw)
        with click.progressbar(length=len(todo), label="registering units", file=click.get_text_stream("stderr")) as bar:
            done = import_csv(config, db, identity, ca, todo, out, pw, existing_keys_root=existing_keys_root,
                              progress=lambda _row: bar.update(1), failures=skipped)
        for prov in done:
            _write_agent_home(prov, config)
        refresh_agent_directories(config, db, identity, [p.keys_dir for p in done])
        _warn_network(config)
    skipped.sort(key=lambda r: r.line)
    refused = [r for r in skipped if r.refused]
    if as_json:
        echo_json({"ok": not refused, "dry_run": dry_run, "encoding": units.encoding, "delimiter": units.delimiter,
                   "registered": [] if dry_run else [p.address for p in done],
                   "would_register": [r.address for r in todo] if dry_run else [],
                   "skipped": [{"line": r.line, "address": r.address, "code": r.code, "reason": r.reason,
                                "refused": r.refused} for r in skipped]})
    else:
        delim = {",": "逗号", ";": "分号", "\t": "制表符"}.get(units.delimiter, units.delimiter)
        click.echo(f"读取 read {csv_file}: {units.encoding}, {delim}分隔, {len(units.rows) + len(units.skipped)} 行")
        for r in skipped:
            click.echo(f"  第 {r.line} 行 line {r.line}: {r.address or '(无地址)'}  {SKIP_ZH.get(r.code, r.code)}: {r.reason}")
        if dry_run:
            for r in todo:
                click.echo(f"  第 {r.line} 行 line {r.line}: {r.address}  将登记 would register ({r.name})")
            click.echo(f"试运行 dry run: {len(todo)} unit(s) would be registered, {len(skipped)} skipped "
                       f"({len(refused)} refused); nothing changed")
        else:
            click.echo(f"{len(done)} unit(s) registered, {len(skipped)} skipped ({len(refused)} refused, "
                       f"{len(skipped) - len(refused)} already known or outside {config.prefix}); agent homes under {out}")
    if refused:
        import sys

        sys.exit(1)


@unit.command("list")
@HOME
@json_option
@handles_errors
def unit_list(home: str, as_json: bool) -> None:
    """单位列表 Every unit of the directory with its state, phase and last heartbeat."""
    from docex.hub.tracking import stats_dicts, unit_stats

    config, db = _open(home)
    with db.read() as s:
        stats = stats_dicts(unit_stats(s, online_seconds=config.limits.heartbeat_online_seconds))
    if as_json:
        echo_json(stats)
        return
    phase = glossary.zh(glossary.PHASES)
    for u in stats:
        state = glossary.label(glossary.UNIT_STATES, u["state"])
        online = "在线" if u["online"] else "离线"
        click.echo(f"{u['address']:32} {state} {online} {phase.get(u['phase'], u['phase'])}  {u['name']}")
    click.echo(f"{len(stats)} unit(s)")


def _state_command(state: str) -> Any:
    @HOME
    @click.argument("address")
    @json_option
    @handles_errors
    def command(home: str, address: str, as_json: bool) -> None:
        from docex.hub.units import set_state

        config, db = _open(home)
        set_state(config, db, address, state)
        if as_json:
            echo_json({"ok": True, "address": address, "state": state})
            return
        click.echo(f"{address}: {glossary.both(glossary.UNIT_STATES, state)}")

    return command


unit.command("disable", help="停用单位 Disable a unit: it can neither send nor receive.")(_state_command("disabled"))
unit.command("enable", help="启用单位 Enable a disabled unit again.")(_state_command("enabled"))


@unit.command("phase")
@HOME
@click.argument("address")
@click.argument("phase", type=click.Choice(["pilot", "dual_track", "electronic"]))
@json_option
@handles_errors
def unit_phase(home: str, address: str, phase: str, as_json: bool) -> None:
    """设置推行阶段 Set a unit's rollout phase (pilot, dual_track, electronic)."""
    from docex.hub.units import set_phase

    _, db = _open(home)
    set_phase(db, address, phase)
    if as_json:
        echo_json({"ok": True, "address": address, "phase": phase})
        return
    click.echo(f"{address}: {glossary.both(glossary.PHASES, phase)}")


# --- docex audit ------------------------------------------------------------------------------
@click.group()
def audit() -> None:
    """审计 The hash-chained audit log."""


@audit.command()
@HOME
@json_option
@handles_errors
def verify(home: str, as_json: bool) -> None:
    """核验审计链 Check the audit chain from the first entry to the last, and that the signed
    checkpoints (HUBDIR/audit-checkpoints) agree with it."""
    import sys

    from docex.hub import audit as hub_audit
    from docex.hub import checkpoints

    config, db = _open(home)
    with db.read() as s:
        result = hub_audit.verify_chain(s)
    report = checkpoints.verify(config, db)
    ok = result.ok and report.ok
    if as_json:
        echo_json({"ok": ok, "entries": result.entries, "first_bad": result.first_bad, "problem": result.problem,
                   "checkpoints": report.checkpoints, "latest_checkpoint": report.latest,
                   "checkpoint_problems": report.problems, "warnings": report.warnings})
    else:
        if result.ok:
            click.echo(f"审计链完整 audit chain intact: {result.entries} entries")
        else:
            click.echo(f"审计链损坏 audit chain BROKEN at entry {result.first_bad}: {result.problem}", err=True)
        if report.latest is not None:
            latest = report.latest
            click.echo(f"检查点 checkpoints: {report.checkpoints}, newest #{latest['seq']} at {localtime.show(latest['at'])} "
                       f"covers {latest['entries']} entries")
        for problem in report.problems:
            click.echo(f"检查点不符 checkpoint FAILED [{problem['code']}] {problem['message']}", err=True)
        for warning in report.warnings:
            click.echo(f"注意 warning: {warning}", err=True)
    if not ok:
        sys.exit(1)


@audit.command("checkpoint")
@HOME
@passphrase_options
@json_option
@handles_errors
def checkpoint_now(home: str, passphrase: PassphraseSource, as_json: bool) -> None:
    """立即生成审计检查点 Sign and timestamp a checkpoint of the audit chain now."""
    from docex.hub import checkpoints
    from docex.hub.identity import HubIdentity
    from docex.hub.stamping import load_stamper

    config, db = _open(home)
    pw = _passphrase(config, passphrase)
    identity = HubIdentity.load(config, pw)
    cp = checkpoints.make(config, db, identity.cert, identity.key, load_stamper(config, pw), "operator: checkpoint")
    assert cp is not None
    if as_json:
        echo_json(cp.payload())
    else:
        click.echo(f"检查点 checkpoint #{cp.seq}: {cp.entries} entries, head {cp.head[:16]}…")


# --- docex track / documents ------------------------------------------------------------------
@click.command()
@HOME
@click.argument("message_id")
@json_option
@handles_errors
def track(home: str, message_id: str, as_json: bool) -> None:
    """公文跟踪 One document's per-recipient states and times. MESSAGE_ID: the id or a unique beginning of it."""
    from docex.cli.ids import resolve
    from docex.hub.models import Document
    from docex.hub.tracking import document_detail
    from docex.protocols.errors import DocexError

    _, db = _open(home)
    with db.read() as s:
        message_id = resolve(s, Document.message_id, message_id)
        detail = document_detail(s, message_id)
    if detail is None:
        raise DocexError("unknown_document", f"no document {message_id} at this hub")
    if as_json:
        echo_json(detail)
        return
    click.echo(f"{detail['doc_number']} 《{detail['title']}》 from {detail['sender_name'] or detail['sender']}  [{detail['priority']}]")
    click.echo(f"接收 accepted {localtime.show(detail['accepted_at'])}, 时限 deadline "
               f"{localtime.show(detail['deadline']) or '—'}  ({localtime.label()})")
    for r in detail["recipients"]:
        when = r["signed_for_at"] or r["returned_at"] or r["delivered_at"] or r["routed_at"] or r["accepted_at"] or ""
        extra = f"  理由: {r['reason']}" if r["reason"] else (f"  [{r['code']}]" if r["code"] else "")
        click.echo(f"  {r['address']:32} {STATE_ZH.get(r['state'], r['state']):5} {localtime.show(when)}  {r['name']}{extra}")


@click.command()
@HOME
@click.option("--unit", "unit_address", default="", help="Sent or received by this unit.")
@click.option("--state", default="", help="With at least one recipient in this state.")
@click.option("-q", "--query", default="", help="Search document number or title.")
@click.option("--limit", default=50, show_default=True)
@json_option
@handles_errors
def documents(home: str, unit_address: str, state: str, query: str, limit: int, as_json: bool) -> None:
    """公文列表 List documents, newest first."""
    from docex.hub.tracking import DocumentQuery, list_documents

    _, db = _open(home)
    with db.read() as s:
        items = list_documents(s, DocumentQuery(q=query, unit=unit_address, state=state, limit=limit))
    if as_json:
        echo_json(items)
        return
    for d in items:
        summary = " ".join(f"{STATE_ZH.get(k, k)}{v}" for k, v in sorted(d["states"].items()))
        click.echo(f"{d['message_id']}  {localtime.show(d['accepted_at'])}  {d['doc_number']} 《{d['title']}》 {d['sender']}  {summary}")
    click.echo(f"{len(items)} document(s)")


from docex.cli.dead_letters import dead_letters as _dead_letters  # noqa: E402 - registered last

hub.add_command(_dead_letters)


# approved terminals (docex/cli/enroll.py)
def _enrollment_commands() -> None:
    from docex.cli.enroll import approve, requests_

    unit.add_command(requests_)
    unit.add_command(approve)


_enrollment_commands()
