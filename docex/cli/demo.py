"""`docex demo` (`make demo`): a real network on the local RabbitMQ — the county hub and
its units' agents as processes — documents flowing, staff signing for them, and a live
table of every recipient's state until all are done."""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from docex.cli.logs import setup as setup_logging
from docex.protocols import glossary

if TYPE_CHECKING:
    from docex.hub.db import Database
    from docex.hub.units import CsvUnit

PREFIX = "qingyuan.yangshan"
CORE = ("qingyuan.yangshan.xxzx", "qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb")
STATE_ZH = {k: v for k, v in glossary.zh(glossary.STATES).items() if k != "recalled"}
FINAL = {"signed_for", "returned", "rejected", "expired", "paper_route"}


def _broker_or_exit() -> None:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        click.echo(
            "docex demo: no RabbitMQ on 127.0.0.1:5672. Start one, then run `make demo` again:\n"
            "  docker compose up -d rabbitmq\n"
            "  or: sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached\n"
            "       sudo rabbitmq-plugins enable rabbitmq_management", err=True)
        sys.exit(1)
    import requests

    try:
        requests.get("http://127.0.0.1:15672/api/overview", auth=("guest", "guest"), timeout=3).raise_for_status()
    except requests.RequestException:
        click.echo("docex demo: RabbitMQ runs but its management API (15672) does not answer:\n"
                   "  sudo rabbitmq-plugins enable rabbitmq_management", err=True)
        sys.exit(1)


def finish(done: bool, keep: bool) -> None:
    """Leave the network running until Ctrl-C if asked; fail the command if not all done."""
    if keep:
        click.echo("   running; Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    if not done:
        sys.exit(1)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def choose_units(count: int) -> list[CsvUnit]:
    """The information centre, 县委办, 县府办, then bureaus and townships alternately."""
    from docex.data import COUNTY_CSV, path
    from docex.hub.units import read_csv

    rows = list(read_csv(path(COUNTY_CSV)))
    if count >= len(rows):
        return rows
    core = [r for r in rows if r.address in CORE]
    bureaus = [r for r in rows if r.address not in CORE and r.kind != "township"]
    towns = [r for r in rows if r.kind == "township"]
    mixed = [x for pair in zip(bureaus, towns, strict=False) for x in pair]
    return core + mixed[: max(0, count - len(core))]


def state_table(docs: list[tuple[str, str, Database]]) -> tuple[str, bool]:
    """One line per (label, message id, hub database): how many of the document's
    recipients are in each state. Done when every recipient is in a final state."""
    from docex.hub.tracking import document_detail

    labelled = any(label for label, _, _ in docs)
    head = f"{'路径 path':10} " if labelled else ""
    lines = [f"{head}{'发文字号':18} {'标题':22} " + " ".join(f"{STATE_ZH[s]:>4}" for s in STATE_ZH)]
    done = True
    for label, message_id, db in docs:
        prefix = f"{label:10} " if labelled else ""
        with db.read() as s:
            d = document_detail(s, message_id)
        if d is None:
            lines.append(f"{prefix}{message_id[:8]}… 等待中心接收 (waiting for the hub)")
            done = False
            continue
        counts = dict.fromkeys(STATE_ZH, 0)
        for r in d["recipients"]:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
            done &= r["state"] in FINAL
        lines.append(f"{prefix}{d['doc_number']:18} {d['title'][:12]:22} " + " ".join(f"{counts[s]:>5}" for s in STATE_ZH))
    return "\n".join(lines), done


@click.command()
@click.option("--units", default=15, show_default=True, help="How many units of the county (125: all).")
@click.option("--dir", "workdir", default="demo-run", show_default=True, type=click.Path(file_okay=False))
@click.option("--timeout", default=180, show_default=True, help="Seconds to wait for all sign-fors.")
@click.option("--keep", is_flag=True, help="Leave the network running (Ctrl-C stops it).")
@click.option("--levels", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="3: the city hub, the county hub under it, the bridge, township units.")
def demo(units: int, workdir: str, timeout: int, keep: bool, levels: str) -> None:
    """演示 Run a real network: county hub + unit agents, documents, receipts, a live table."""
    if levels == "3":
        from docex.cli.levels_demo import run_three_levels

        _broker_or_exit()
        setup_logging()
        run_three_levels(units, workdir, timeout, keep)
        return
    from docex.agent.actions import return_document, sign_for
    from docex.agent.context import AgentContext
    from docex.agent.sending import Draft, queue_document
    from docex.agent.store import Received
    from docex.cli.localnet import LocalNetwork, transport_line
    from docex.hub.db import Database

    _broker_or_exit()
    setup_logging()
    root = Path(workdir).resolve()
    if root.exists():
        shutil.rmtree(root)
    chosen = choose_units(units)
    click.echo(f"== 1. 建立县交换中心 {PREFIX} 和 {len(chosen)} 个单位 (hub + units) in {root}")
    with click.progressbar(length=len(chosen), label="   注册单位 registering", file=sys.stderr) as bar:
        net = LocalNetwork.create(root, PREFIX, chosen, name="阳山县电子公文交换中心", tag=f"demo{os.getpid()}",
                                  progress=lambda _a: bar.update(1))
    click.echo(transport_line(net.config))
    db = Database(net.config.database_url)
    try:
        click.echo("== 2. 启动中心和各单位终端 (processes on the local RabbitMQ)")
        api_port = 8470 if _port_free(8470) else 0
        net.start_hub(workers=1, api_port=api_port)
        net.wait_ready("hub", "running")
        net.start_agents(per_process=1 if len(chosen) <= 20 else 16)
        click.echo("== 2b. 新终端申请证书，信息中心核对指纹后批准 (a terminal enrols; the centre approves)")
        from docex.cli.enroll_demo import enrol_terminal

        enrolled = enrol_terminal(net, db)
        net.start_agent(enrolled.name)
        time.sleep(3)
        addresses = [u.address for u in chosen] + [enrolled.name]
        ctx = {a: AgentContext.open(net.agents[a]) for a in addresses}
        sender = ctx["qingyuan.yangshan.xxzx"]
        wait = time.monotonic() + 30
        while sender.lookup(enrolled.name) is None and time.monotonic() < wait:  # the next directory tick
            time.sleep(0.5)
            sender.load_directories()
        click.echo("== 3. 发文 (sending)")
        note = "各单位：\n    为推进电子公文交换系统建设，定于2011年8月24日举办操作培训。\n\n阳山县信息中心\n2011年8月20日\n"
        drafts = [
            ("qingyuan.yangshan.xxzx", Draft(to=tuple(a for a in addresses if a != "qingyuan.yangshan.xxzx"),
                                              title="关于举办电子公文交换系统培训的通知", doc_number="阳信发〔2011〕5号",
                                              priority="加急", files={"通知.txt": note.encode()})),
            ("qingyuan.yangshan.zfb", Draft(to=tuple(addresses[3:6]) or ("qingyuan.yangshan.xwb",),
                                             cc=("qingyuan.yangshan.xwb",), title="关于做好防汛工作的紧急通知",
                                             doc_number="阳府办明电〔2011〕12号", priority="特急",
                                             files={"防汛.txt": "请各单位做好防汛准备。".encode()})),
            ("qingyuan.yangshan.xwb", Draft(to=("qingyuan.yangshan.zfb", "guangdong.swb"),
                                             title="关于报送年度工作总结的通知", doc_number="阳办发〔2011〕42号",
                                             files={"总结.txt": "请于12月20日前报送。".encode()})),
        ]
        ids = []
        for sender, draft in drafts:
            ids.append(queue_document(ctx[sender], draft))
            click.echo(f"   {sender} -> {len(draft.to) + len(draft.cc)} 个单位: {draft.doc_number} 《{draft.title}》")
        click.echo("   (guangdong.swb 不在网上: 应走纸质 / off the network: paper route)")
        click.echo("== 4. 各单位签收或退回 (staff sign for, one returns); live table:")
        deadline = time.monotonic() + timeout
        returned = False
        rng = random.Random(7)
        while True:
            for address, c in ctx.items():
                with c.store.session() as s:
                    pending = [r.message_id for r in s.query(Received).filter(Received.state == "delivered")]
                for message_id in pending:
                    if not returned and address == "qingyuan.yangshan.zfb" and message_id == ids[2]:
                        return_document(c, message_id, "请补充附件后重新发送")
                        returned = True
                    elif rng.random() < 0.5:
                        sign_for(c, message_id)
            table, done = state_table([("", i, db) for i in ids])
            click.echo("\x1b[2J\x1b[H" + table if sys.stdout.isatty() else table + "\n")
            if done or time.monotonic() > deadline:
                break
            time.sleep(1.5)
        click.echo("== 5. 结果 (result)")
        click.echo("   全部完成 all recipients done" if done else "   超时 timed out: some recipients are not done")
        click.echo(f"   track: docex track --home {net.hub_home} {ids[0]}")
        if api_port:
            click.echo(f"   dashboard: http://127.0.0.1:{api_port}/ (docex hub user add --home {net.hub_home} --name admin)")
        finish(done, keep)
    finally:
        db.dispose()
        net.destroy()
