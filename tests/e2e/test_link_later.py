"""A county that has run alone with its units is linked to the city afterwards, in the
operator's order of steps (docs/linking.md): `docex link create --child-ca` at the city,
`docex bridge run --trust-parent-ca` beside the county hub. No agent home is touched: the
CAs each side now trusts reach every agent in its own hub's signed directory snapshot, and
documents and receipts then cross both ways. Dropping an anchor at a hub reaches the agents
the same way. Each hub runs two intake processes: the CA added to its trust folder after
start counts in both without a restart (docex.hub.identity)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from docex.agent.actions import sign_for
from docex.agent.context import AgentContext
from docex.agent.store import Held, Outgoing
from docex.bridge.config import BridgeConfig
from docex.cli.link import attach
from docex.cli.localnet import CITY_PREFIX, COUNTY_PREFIX, LocalNetwork
from docex.hub.db import Database
from docex.hub.units import CsvUnit
from docex.pki.keys import load_certificate
from tests.cli.runner import run
from tests.e2e.support import Network, knows, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

SWB = "qingyuan.swb"
XXZX, YANGCHENG = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.yangcheng"


@dataclass
class Later:
    city: Network
    county: Network
    bridge_home: Path
    trust_before: dict[str, list[str]]


def _trust_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "trust").glob("*")) + [p.name for p in home.glob("ca.crt")]


@pytest.fixture(scope="module")
def later(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Later]:
    root = tmp_path_factory.mktemp("later")
    tag = f"ll{uuid.uuid4().hex[:8]}"
    city_net = LocalNetwork.create(root / "city", CITY_PREFIX, [CsvUnit(SWB, "中共清远市委办公室", "party", "", "")],
                                   name="清远市电子公文交换中心", tag=tag)
    county_net = LocalNetwork.create(root / "county", COUNTY_PREFIX,
                                     [CsvUnit(XXZX, "阳山县信息中心", "county", "", ""),
                                      CsvUnit(YANGCHENG, "阳山县阳城镇人民政府", "township", "", "")],
                                     name="阳山县电子公文交换中心", tag=tag)  # trusts nobody else
    city = Network(city_net, Database(city_net.config.database_url))
    county = Network(county_net, Database(county_net.config.database_url))
    try:
        for net in (city, county):
            net.start_hub(workers=2)  # a worker process runs no scheduler: it sees new trust files by itself
            net.start_agents(per_process=4)
        trust_before = {a: _trust_files(net.home(a)) for net in (city, county) for a in net.addresses}
        yield Later(city, county, root / "bridge", trust_before)
    finally:
        county.close()
        city.close()


def _held(net: Network, sender: str, message_id: str) -> bool:
    with net.agent(sender).store.session() as s:
        return s.get(Held, message_id) is not None and s.get(Outgoing, message_id) is None


def test_the_county_runs_alone_first(later: Later) -> None:
    county = later.county
    mid, _ = county.send(XXZX, [YANGCHENG], doc_number="阳信发〔2011〕30号")
    county.wait_sent(XXZX, mid, "delivered", [YANGCHENG])
    assert not knows(county.home(XXZX), SWB)
    # Not linked yet: the county is the whole network, so an address outside it is off the
    # network: the hub records it and answers paper route.
    alone, _ = county.send(XXZX, [SWB], doc_number="阳信发〔2011〕31号")
    county.wait_sent(XXZX, alone, "paper_route", [SWB])
    assert county.hub_states(alone) == {SWB: "paper_route"}


def test_linked_afterwards_without_reprovisioning_and_exchanging_both_ways(later: Later) -> None:
    city, county = later.city, later.county
    county_ca = county.config.ca_dir / "ca.crt"
    # 1. at the city: the link, trusting the county's CA
    result = run("link", "create", "--home", str(city.hub_home), "--child", COUNTY_PREFIX, "--out",
                 str(later.bridge_home), "--child-ca", str(county_ca), "--insecure-no-passphrase")
    assert result.exit_code == 0, result.output
    # The county hub has its parent link before the city's directory crossed it: a county
    # unit's document to a city unit waits, unpacked, for the directory.
    attach(BridgeConfig.load(later.bridge_home), str(county.hub_home))

    def agents_know_the_parent() -> bool:
        fresh = AgentContext.open(county.home(YANGCHENG))
        try:
            own = next(d for d in fresh.directories() if d.prefix == COUNTY_PREFIX)
            return own.has_parent
        finally:
            fresh.store.dispose()

    wait_until(agents_know_the_parent, 30, "the county's snapshot to say it has a parent now")
    held, _ = county.send(YANGCHENG, [SWB], doc_number="阳城发〔2011〕4号")
    assert _held(county, YANGCHENG, held)
    assert county.sent(YANGCHENG, held)[SWB].state == "waiting_for_directory"
    listing = run("sent", "--home", county.home(YANGCHENG))
    assert "等待通讯录" in listing.output
    # 2. beside the county hub: the bridge, making the county hub trust the city's CA
    county.net._spawn("bridge", ["bridge", "run", "--home", str(later.bridge_home), "--hub", str(county.hub_home),
                                 "--trust-parent-ca"])
    county.net.wait_ready("bridge", "running")
    # 3. nothing else: each hub's next snapshot carries the other CA; agents learn it.
    wait_until(lambda: knows(county.home(YANGCHENG), SWB) and knows(city.home(SWB), YANGCHENG), 120,
               "directories across the new link")
    city_ca = load_certificate(city.config.ca_dir / "ca.crt")
    fresh = AgentContext.open(county.home(XXZX))  # as a new `docex send` sees it
    try:
        assert any(a.subject == city_ca.subject for a in fresh.trust.anchors)
    finally:
        fresh.store.dispose()
    up, _ = county.send(YANGCHENG, [SWB], doc_number="阳城发〔2011〕5号")
    down, _ = city.send(SWB, [XXZX, YANGCHENG], doc_number="清办发〔2011〕9号")
    city.wait_hub(up, "delivered", [SWB])
    # Released once the county agent knew SWB, it may reach SWB's agent before that agent's
    # snapshot carries the county's CA: it then waits for it there (never quarantined).
    county.wait_sent(YANGCHENG, held, "delivered", [SWB])
    county.wait_sent(YANGCHENG, up, "delivered", [SWB])
    county.wait_hub(down, "delivered", [XXZX, YANGCHENG])
    sign_for(county.agent(XXZX), down)
    wait_until(lambda: {a: r.state for a, r in city.sent(SWB, down).items()}
               == {XXZX: "signed_for", YANGCHENG: "delivered"}, 60, "the county's receipts at the city sender")
    assert county.quarantined(XXZX, down) == [] and city.quarantined(SWB, up) == [] == city.quarantined(SWB, held)
    # No agent home was re-provisioned: their trust files are as the hub first wrote them.
    for net in (city, county):
        for address in net.addresses:
            assert _trust_files(net.home(address)) == later.trust_before[address]


def test_an_anchor_removed_at_the_hub_leaves_every_agent(later: Later) -> None:
    county = later.county
    anchor = county.config.trust_dir / "link-parent-ca.crt"
    kept = anchor.read_bytes()
    city_ca = load_certificate(later.city.config.ca_dir / "ca.crt")

    def agent_trusts_city() -> bool:
        # The agent's stored directory as a new `docex send` reads it: directory.der and the
        # signed deltas kept on top of it.
        fresh = AgentContext.open(county.home(XXZX))
        try:
            (snap,) = [d for d in fresh.directories() if d.prefix == county.config.prefix]
            return any(a.subject == city_ca.subject for a in snap.anchor_certificates())
        finally:
            fresh.store.dispose()

    assert agent_trusts_city()
    anchor.unlink()
    try:
        wait_until(lambda: not agent_trusts_city(), 60, "the dropped anchor to leave the agent's directory")
    finally:
        anchor.write_bytes(kept)
    wait_until(agent_trusts_city, 60, "the anchor to come back")
