"""`docex demo --levels 3` (`make demo`): city, county and township as one network.

The city exchange `qingyuan` (with units of the city and of other counties under it), the
county hub `qingyuan.yangshan` as its child, the bridge between them, and the county's
units and townships, all real processes on the local RabbitMQ (two vhosts). Documents go
up, down and across; staff sign for them; a live table follows each one at its sender's
hub; at the end the bridge operator's view: link status and routes on both hubs."""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

COUNTY = "qingyuan.yangshan"
XXZX, XWB, ZFB = f"{COUNTY}.xxzx", f"{COUNTY}.xwb", f"{COUNTY}.zfb"
SWB, CITY_ZFB, YINGDE = "qingyuan.swb", "qingyuan.zfb", "qingyuan.yingde.swb"


def _towns(rows: list[Any], count: int) -> list[str]:
    return [r.address for r in rows if r.kind == "township"][:count]


def run_three_levels(units: int, workdir: str, timeout: int, keep: bool) -> None:
    from docex.agent.actions import sign_for
    from docex.agent.context import AgentContext
    from docex.agent.sending import Draft, queue_document
    from docex.agent.store import Received
    from docex.cli.demo import choose_units, finish, state_table
    from docex.cli.link import render_status
    from docex.cli.localnet import CityCounty, transport_line
    from docex.data import CITY_CSV, path
    from docex.hub import links
    from docex.hub.db import Database
    from docex.hub.units import read_csv

    root = Path(workdir).resolve()
    if root.exists():
        shutil.rmtree(root)
    county_rows = choose_units(units)
    city_rows = list(read_csv(path(CITY_CSV)))
    total = len(county_rows) + len(city_rows)
    click.echo(f"== 1. 建立三级网络 (three levels) in {root}")
    click.echo(f"   市交换中心 qingyuan ({len(city_rows)} 个市直和各县市单位) <- 桥接 bridge -> "
               f"县交换中心 {COUNTY} ({len(county_rows)} 个单位和乡镇)")
    click.echo("   县委办等单位沿用市 CA 证书 (units keeping their city certificates): "
               + ", ".join(r.address for r in county_rows if r.existing_certificate == "city"))
    with click.progressbar(length=total, label="   注册单位 registering", file=sys.stderr) as bar:
        net = CityCounty.create(root, city_units=city_rows, county_units=county_rows, tag=f"demo3x{os.getpid()}",
                                progress=lambda _a: bar.update(1))
    click.echo(transport_line(net.county.config))
    dbs = {"city": Database(net.city.config.database_url), "county": Database(net.county.config.database_url)}
    contexts: dict[str, Any] = {}
    try:
        click.echo("== 2. 启动两级中心、桥接和各单位终端 (hubs, bridge, agents as processes)")
        net.start(per_process=8)
        click.echo("== 2b. 新终端申请证书，县信息中心核对指纹后批准 (a county terminal enrols; the centre approves)")
        from docex.cli.enroll_demo import enrol_terminal

        enrolled = enrol_terminal(net.county, dbs["county"]).name
        net.county.start_agent(enrolled)
        homes = {**net.city.agents, **net.county.agents}
        contexts = {a: AgentContext.open(h) for a, h in homes.items()}
        towns = _towns(county_rows, 3) or [XXZX]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (contexts[XWB].lookup(SWB) and contexts[SWB].lookup(towns[0])
                                                   and contexts[SWB].lookup(enrolled)):
            time.sleep(0.5)
        click.echo("   目录已跨链路交换 (directories crossed the link, signed by their own hubs)")
        click.echo("== 3. 发文 (sending): 上行, 下行, 跨县, 出省")
        drafts = [
            ("县→市", "county", XWB, Draft(to=(SWB,), cc=(CITY_ZFB,), title="关于电子公文交换系统试点情况的报告",
                                          doc_number="阳办报〔2011〕15号", priority="加急",
                                          files={"报告.txt": "试点单位已全部开通电子公文交换。".encode()})),
            ("市→县/镇", "city", SWB, Draft(to=(*towns, enrolled), cc=(ZFB,), title="关于做好秋季森林防火工作的通知",
                                           doc_number="清办发〔2011〕88号", priority="特急",
                                           files={"通知.txt": "请各地加强巡查。".encode()})),
            ("镇→他县", "county", towns[0], Draft(to=(YINGDE,), title="关于商请协助核实流动人口信息的函",
                                                 doc_number="阳城函〔2011〕6号",
                                                 files={"函.txt": "请协助核实。".encode()})),
            ("他县→镇", "city", YINGDE, Draft(to=(towns[0],), title="关于流动人口信息核实情况的复函",
                                             doc_number="英办函〔2011〕21号",
                                             files={"复函.txt": "已核实。".encode()})),
            ("县→省", "county", XXZX, Draft(to=("guangdong.swb",), title="关于报送信息化工作总结的报告",
                                           doc_number="阳信报〔2011〕9号", files={"总结.txt": "见附件。".encode()})),
        ]
        docs = []
        for label, side, sender, draft in drafts:
            docs.append((label, queue_document(contexts[sender], draft), dbs[side]))
            click.echo(f"   {label:8} {sender} -> {', '.join((*draft.to, *draft.cc))}: {draft.doc_number}")
        click.echo("   (guangdong.swb 在省里, 不在网上: 市中心签发纸质通知 / the province is off the network: paper route)")
        click.echo("== 4. 各单位签收 (staff sign for); live table at each sender's hub:")
        deadline = time.monotonic() + timeout
        rng = random.Random(11)
        done = False
        while True:
            for c in contexts.values():
                with c.store.session() as s:
                    pending = [r.message_id for r in s.query(Received).filter(Received.state == "delivered")]
                for message_id in pending:
                    if rng.random() < 0.6:
                        sign_for(c, message_id)
            table, done = state_table(docs)
            click.echo("\x1b[2J\x1b[H" + table if sys.stdout.isatty() else table + "\n")
            if done or time.monotonic() > deadline:
                break
            time.sleep(1.5)
        click.echo("== 5. 链路 (the bridge operator's view)")
        for side in ("county", "city"):
            hub = net.county if side == "county" else net.city
            click.echo(f"-- docex link status --home {hub.hub_home}")
            for line in render_status(links.status(hub.config, dbs[side])):
                click.echo(line)
        click.echo(f"-- docex link routes --home {net.county.hub_home}")
        for r in links.routes(net.county.config, dbs["county"]):
            click.echo(f"   {r.prefix:24} -> {r.goes_to:16} {r.note}")
        click.echo("== 6. 结果 (result)")
        click.echo("   全部完成 all recipients done" if done else "   超时 timed out: some recipients are not done")
        click.echo(f"   bridge: docex bridge status --home {net.bridge_home}")
        finish(done, keep)
    finally:
        for c in contexts.values():
            c.store.dispose()
        for db in dbs.values():
            db.dispose()
        net.destroy()
