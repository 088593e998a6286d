"""The unit's commands: run the agent, send, inbox, sign for, return, sent."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy import select

from docex.cli.logs import setup as setup_logging
from docex.cli.options import (
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)
from docex.protocols import glossary, localtime
from docex.protocols.manifest import PRIORITIES

if TYPE_CHECKING:
    from docex.agent.context import AgentContext
    from docex.agent.store import AgentStore

HOME = click.option("--home", required=True, type=click.Path(exists=True, file_okay=False), help="Agent home (AGENTDIR).")
STATE_ZH = glossary.zh(glossary.STATES) | glossary.zh(glossary.SENDER_STATES)  # the sender's view
INBOX_ZH = glossary.zh(glossary.INBOX_STATES)  # the recipient's own inbox


def _ctx(home: str, passphrase: PassphraseSource | None = None) -> AgentContext:
    from docex.agent.config import AgentConfig
    from docex.agent.context import AgentContext

    config = AgentConfig.load(home)
    if passphrase is not None and (passphrase.file or passphrase.env or passphrase.insecure):
        pw = passphrase.get()
    else:
        pw = config.keys.passphrase()
    return AgentContext.open(home, pw)


def _store(home: str) -> AgentStore:
    """The unit's local store alone: listing needs no passphrase (signing and opening do)."""
    from docex.agent.config import AgentConfig
    from docex.agent.store import AgentStore

    return AgentStore(AgentConfig.load(home).database_url)


def _addresses(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Addresses given comma-separated, repeated, or both."""
    return tuple(a.strip() for v in values for a in v.split(",") if a.strip())


@click.group()
def agent() -> None:
    """单位终端 The unit's agent service."""


@agent.command()
@HOME
@click.option("--metrics-port", type=int, help="Prometheus /metrics port (default from config; 0 off).")
@passphrase_options
@handles_errors
def run(home: str, metrics_port: int | None, passphrase: PassphraseSource) -> None:
    """运行单位终端 Run the agent in the foreground: send the outbox, receive, receipt."""
    import signal

    from docex.agent.service import AgentService

    setup_logging()
    ctx = _ctx(home, passphrase)
    port = metrics_port if metrics_port is not None else ctx.config.metrics_port
    if port:
        from docex.agent.status import agent_status
        from docex.monitoring.exporter import metrics_address, serve_metrics, service_metrics

        registry, ctx.observer = service_metrics("agent", agent_status(ctx), cache_seconds=5.0)
        serve_metrics(registry, *metrics_address("agent", port=port))
    service = AgentService(ctx)
    desk = None
    if ctx.config.desk.port:
        from docex.agent.desk.server import DeskServer

        desk = DeskServer(ctx, wake=service.wake)
        desk.start()
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    try:
        service.run()
    finally:
        if desk is not None:
            desk.stop()


@agent.command("add-person")
@HOME
@click.argument("person_dir", type=click.Path(exists=True, file_okay=False))
@json_option
@handles_errors
def add_person(home: str, person_dir: str, as_json: bool) -> None:
    """登记签收人证书 Register a staff member's personal certificate (from `docex pki issue-person`) for the desk."""
    from docex.agent.desk.auth import add_person as register

    ident, name = register(_ctx(home), person_dir)
    if as_json:
        echo_json({"ok": True, "id": ident, "name": name})
        return
    click.echo(f"{name}: registered (id {ident}); log in at the desk with the certificate's passphrase")


@agent.command()
@HOME
@click.option("--label", default="office-system", show_default=True, help="Whose token (recorded with what it does).")
@json_option
@handles_errors
def token(home: str, label: str, as_json: bool) -> None:
    """办公系统接口令牌 A new API token for an office system (Authorization: Bearer TOKEN); printed once, on the last line."""
    from docex.agent.config import AgentConfig
    from docex.agent.desk.auth import new_token

    config = AgentConfig.load(home)
    value = new_token(config.home, label)
    if as_json:
        echo_json({"ok": True, "label": label, "token": value})
        return
    click.echo(f"API token for {label} (keep it secret; only its hash is stored):")
    click.echo(value)


@click.command()
@HOME
@click.option("--to", "to", required=True, help="Main recipients (主送), comma-separated addresses.")
@click.option("--cc", "cc", multiple=True, help="Copy recipients (抄送); comma-separated or repeated.")
@click.option("--title", required=True)
@click.option("--doc-number", required=True, help="发文字号, e.g. 阳办发〔2011〕42号.")
@click.option("--priority", type=click.Choice(PRIORITIES), default="平急", show_default=True)
@click.option("--classification", default="", help="密级; 秘密/机密/绝密 are refused on this network.")
@click.option("--large", "large", type=click.Path(exists=True, dir_okay=False),
              help="大文件 A big file (a scan, an archive; 2 GB and more) sent in chunks beside FILES; "
                   "leave it in place until the document is delivered.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@json_option
@passphrase_options
@handles_errors
def send(home: str, to: str, cc: tuple[str, ...], title: str, doc_number: str, priority: str, classification: str,
         large: str | None, files: tuple[str, ...], as_json: bool, passphrase: PassphraseSource) -> None:
    """发文 Put a document in the outbox (sent when the agent runs). Prints the message id.
    Addresses inside the network that no directory knows are refused; recipients outside it
    get the document on paper (纸质传递), with a warning first."""
    from docex.agent.sending import Draft, paper_route, queue_document

    ctx = _ctx(home, passphrase)
    draft = Draft(to=_addresses([to]), cc=_addresses(cc), title=title, doc_number=doc_number, priority=priority,
                  classification=classification, files={Path(f).name: Path(f).read_bytes() for f in files})
    on_paper = paper_route(ctx, (*draft.to, *draft.cc))
    for address in on_paper:
        click.echo(f"注意 warning: {address} 不在本网通讯录中，将以纸质方式传递 is outside the network: "
                   "it will be a paper route (send it on paper)", err=True)
    if large is not None:
        from docex.agent.large import queue_large

        message_id = queue_large(ctx, draft, Path(large))
    else:
        message_id = queue_document(ctx, draft)
    if as_json:
        echo_json({"message_id": message_id, "paper_route": on_paper})
    else:
        click.echo(message_id)


@click.command()
@HOME
@click.argument("query", required=False, default="")
@json_option
@handles_errors
def directory(home: str, query: str, as_json: bool) -> None:
    """通讯录 The units this agent can send to (its county and every directory it holds),
    searched by name or address."""
    ctx = _ctx(home)
    needle = query.lower()
    units = sorted((u for u in ctx.units() if not needle or needle in u.address.lower() or needle in u.name.lower()),
                   key=lambda u: u.address)
    if as_json:
        echo_json([{"address": u.address, "name": u.name, "kind": u.kind, "state": u.state, "phase": u.phase}
                   for u in units])
        return
    for u in units:
        state = "" if u.state == "enabled" else f"  [{glossary.label(glossary.UNIT_STATES, u.state)}]"
        click.echo(f"{u.address:36} {u.name}{state}")
    click.echo(f"{len(units)} 个单位 unit(s)")


@click.command()
@HOME
@click.option("--state", default="",
              help="delivered (not yet signed for), signed_for, returned, or awaiting_trust (kept until the "
                   "sender's CA is trusted here; listed with all states too).")
@json_option
@handles_errors
def inbox(home: str, state: str, as_json: bool) -> None:
    """收件箱 Received documents, newest first; those awaiting trust (等待信任) first of all."""
    import datetime as dt

    from docex.agent.config import AgentConfig
    from docex.agent.store import AgentStore, Received, awaiting_trust

    config = AgentConfig.load(home)
    store = AgentStore(config.database_url)
    waiting = []
    with store.session() as s:
        if state in ("", "awaiting_trust"):
            waiting = awaiting_trust(s)
        rows = []
        if state != "awaiting_trust":
            stmt = select(Received).order_by(Received.received_at.desc())
            if state:
                stmt = stmt.where(Received.state == state)
            rows = list(s.execute(stmt).scalars())
    wait = dt.timedelta(minutes=config.trust_wait_minutes)
    # Not opened yet: the cover as our hub routed it, the sender's name if our directory knows it.
    items = [{"message_id": w.message_id, "doc_number": w.doc_number, "title": w.title, "sender": w.sender,
              "sender_name": w.sender_name, "priority": w.priority, "received_at": localtime.iso(w.since),
              "state": "awaiting_trust", "seal": "", "path": "", "person": "", "reason": "",
              "wait_until": localtime.iso(w.since + wait)}
             for w in reversed(waiting)]
    items += [{"message_id": r.message_id, "doc_number": r.doc_number, "title": r.title, "sender": r.sender,
               "sender_name": r.sender_name, "priority": r.priority, "received_at": localtime.iso(r.received_at),
               "state": r.state, "seal": r.seal_status, "path": r.path, "person": r.person, "reason": r.reason}
              for r in rows]
    if as_json:
        echo_json(items)
        return
    for i in items:
        line = (f"{i['message_id']}  {localtime.show(i['received_at'], seconds=False)}  "
                f"{INBOX_ZH.get(i['state'], i['state']):4} [{i['priority']}] {i['doc_number']} "
                f"《{i['title']}》 来自 {i['sender_name'] or i['sender']}")
        if i["state"] == "awaiting_trust":
            line += (f"  来文单位的证书尚未受信任，最迟 {localtime.show(i['wait_until'], seconds=False)} 处理 "
                     "(the sender's CA is not trusted here yet)")
        else:
            line += f"  {i['path']}"
        click.echo(line)
    click.echo(f"{len(items)} document(s)")


def _received_id(ctx: AgentContext, given: str) -> str:
    from docex.agent.store import Received
    from docex.cli.ids import resolve

    with ctx.store.session() as s:
        return resolve(s, Received.message_id, given)


@click.command("sign-for")
@HOME
@click.argument("message_id")
@click.option("--person", "person_dir", type=click.Path(exists=True, file_okay=False), help="The signing staff member's folder (person.crt/key).")
@json_option
@passphrase_options
@handles_errors
def sign_for(home: str, message_id: str, person_dir: str | None, as_json: bool, passphrase: PassphraseSource) -> None:
    """签收 Sign for a received document. MESSAGE_ID: the id or a unique beginning of it."""
    from docex.agent.actions import sign_for as do_sign_for

    ctx = _ctx(home, passphrase)
    message_id = _received_id(ctx, message_id)
    do_sign_for(ctx, message_id, person_dir=person_dir, passphrase=ctx.config.keys.passphrase() if person_dir else None)
    if as_json:
        echo_json({"ok": True, "message_id": message_id, "state": "signed_for"})
        return
    click.echo(f"{message_id}: 已签收 signed for; the receipt goes to the sender")


@click.command("return")
@HOME
@click.argument("message_id")
@click.option("--reason", required=True, help="Why it is returned (退回理由).")
@click.option("--person", "person_dir", type=click.Path(exists=True, file_okay=False))
@json_option
@passphrase_options
@handles_errors
def return_(home: str, message_id: str, reason: str, person_dir: str | None, as_json: bool,
            passphrase: PassphraseSource) -> None:
    """退回 Return a received document to its sender with a reason. MESSAGE_ID: the id or a unique beginning of it."""
    from docex.agent.actions import return_document

    ctx = _ctx(home, passphrase)
    message_id = _received_id(ctx, message_id)
    return_document(ctx, message_id, reason, person_dir=person_dir,
                    passphrase=ctx.config.keys.passphrase() if person_dir else None)
    if as_json:
        echo_json({"ok": True, "message_id": message_id, "state": "returned", "reason": reason})
        return
    click.echo(f"{message_id}: 已退回 returned ({reason})")


@click.command()
@HOME
@click.argument("message_id")
@click.option("--reason", required=True, help="Why it is recalled (撤销理由).")
@json_option
@passphrase_options
@handles_errors
def recall(home: str, message_id: str, reason: str, as_json: bool, passphrase: PassphraseSource) -> None:
    """撤销 Recall a document you sent that is not yet signed for by everyone. MESSAGE_ID: the id or a unique beginning of it."""
    from docex.agent.recall import recall_document
    from docex.agent.store import Sent
    from docex.cli.ids import resolve

    ctx = _ctx(home, passphrase)
    with ctx.store.session() as s:
        message_id = resolve(s, Sent.message_id, message_id)
    queued = recall_document(ctx, message_id, reason)
    if as_json:
        echo_json({"ok": True, "message_id": message_id, "recall_queued": queued, "reason": reason})
    elif queued:
        click.echo(f"{message_id}: 撤销已提交 recall queued; recipients that already signed for it keep it")
    else:
        click.echo(f"{message_id}: 已撤销 already recalled")


@click.command()
@HOME
@json_option
@handles_errors
def sent(home: str, as_json: bool) -> None:
    """发文跟踪 The sender's view: each recipient's state, kept current from receipts."""
    from docex.agent.store import Sent, SentRecipient

    store = _store(home)
    with store.session() as s:
        docs = list(s.execute(select(Sent).order_by(Sent.created_at.desc())).scalars())
        recips = list(s.execute(select(SentRecipient)).scalars())
    by_doc: dict[str, list[SentRecipient]] = {}
    for r in recips:
        by_doc.setdefault(r.message_id, []).append(r)
    items = [{"message_id": d.message_id, "doc_number": d.doc_number, "title": d.title, "priority": d.priority,
              "created_at": localtime.iso(d.created_at), "state": d.state,
              "recipients": [{"address": r.recipient, "state": r.state, "at": localtime.iso(r.at),
                              "reason": r.reason, "code": r.code, "receipt": r.receipt is not None}
                             for r in by_doc.get(d.message_id, [])]}
             for d in docs]
    if as_json:
        echo_json(items)
        return
    for item in items:
        click.echo(f"{item['message_id']}  {item['doc_number']} 《{item['title']}》")
        for rec in item["recipients"]:
            extra = f"  [{rec['code']}] {rec['reason']}" if rec["code"] or rec["reason"] else ""
            click.echo(f"    {rec['address']:32} {STATE_ZH.get(rec['state'], rec['state'])}  "
                       f"{localtime.show(rec['at'], seconds=False)}{extra}")


@agent.command("run-many", hidden=True)
@click.option("--home", "homes", multiple=True, required=True, type=click.Path(exists=True, file_okay=False))
@handles_errors
def run_many(homes: tuple[str, ...]) -> None:
    """Several agents as threads of one process (demos and benchmarks on small machines)."""
    import signal
    import threading

    from docex.agent.service import AgentService

    setup_logging()
    services = [AgentService(_ctx(home)) for home in homes]
    threads = [threading.Thread(target=s.run, daemon=True) for s in services]
    for t in threads:
        t.start()

    def stop(*_: object) -> None:
        for s in services:
            s.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for t in threads:
        t.join()


def _enrollment_command() -> None:
    from docex.cli.enroll import enroll

    agent.add_command(enroll)


_enrollment_command()
