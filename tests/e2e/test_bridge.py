"""The city-county-town network end to end: the city hub `qingyuan`, the county hub
`qingyuan.yangshan` under it and the bridge between them, all real processes on the local
RabbitMQ (two vhosts), built by the same CityCounty the demo uses. County units that used
the city system (县委办) keep their city certificates."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest
from sqlalchemy import func, select

from docex.agent.actions import sign_for
from docex.cli.localnet import CityCounty
from docex.hub import links
from docex.hub.content_store import ContentStore, envelope_of
from docex.hub.models import AuditEntry, Document, Outbox, Receipt, RemoteDirectory
from docex.hub.units import CsvUnit
from docex.pki.keys import load_certificate
from docex.protocols import envelope, messages
from docex.protocols.directory import DirectorySnapshot, sign_directory
from docex.protocols.errors import DocexError
from docex.protocols.manifest import Manifest, new_message_id
from docex.protocols.receipt import verify_receipt
from tests.cli.runner import run
from tests.conftest import Pki
from tests.e2e.support import (
    Network,
    city_and_county,
    document_files,
    knows,
    start_linked,
    wait_until,
)

pytestmark = pytest.mark.rabbitmq

SWB, ZFB, YINGDE = "qingyuan.swb", "qingyuan.zfb", "qingyuan.yingde.swb"
XXZX, XWB, YANGCHENG = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.xwb", "qingyuan.yangshan.yangcheng"
CITY_UNITS = [CsvUnit(SWB, "中共清远市委办公室", "party", "", ""), CsvUnit(ZFB, "清远市人民政府办公室", "government", "", ""),
              CsvUnit(YINGDE, "中共英德市委办公室", "party", "", "")]
COUNTY_UNITS = [CsvUnit(XXZX, "阳山县信息中心", "county", "admin_building", ""),
                CsvUnit(XWB, "中共阳山县委办公室", "party", "admin_building", "city"),
                CsvUnit(YANGCHENG, "阳山县阳城镇人民政府", "township", "", "")]


@dataclass
class Levels:
    cc: CityCounty
    city: Network
    county: Network

    def start_bridge(self) -> None:
        self.cc.start_bridge()

    def stop_bridge(self, *, kill: bool = False) -> None:
        self.county.kill("bridge") if kill else self.county.stop("bridge")

    def status(self, net: Network) -> links.LinkReport:
        return links.status(net.config, net.db)[0]

    def bridge_report(self) -> dict:  # type: ignore[type-arg]
        return json.loads((self.cc.bridge_home / "status.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Levels]:
    root = tmp_path_factory.mktemp("levels")
    with city_and_county(root, "br", city_units=CITY_UNITS, county_units=COUNTY_UNITS) as (cc, city, county):
        start_linked(cc, city, county, per_process=8)
        # Each hub's signed directory crosses the link and reaches the other side's agents.
        wait_until(lambda: knows(county.home(XXZX), SWB) and knows(city.home(SWB), YANGCHENG), 60, "directories")
        yield Levels(cc, city, county)


def test_directories_cross_the_link_signed_by_their_owners(levels: Levels) -> None:
    def remote(net: Network) -> dict[str, str]:
        with net.db.read() as s:
            return {r.prefix: r.link for r in s.execute(select(RemoteDirectory)).scalars()}

    # A hub passes a remote snapshot on to its units before it stores it (a crash in between
    # repeats it harmlessly), so an agent can know it a moment before its hub's row commits.
    wait_until(lambda: remote(levels.county) == {"qingyuan": "parent"}, 30, "the county's row for the city")
    wait_until(lambda: remote(levels.city) == {"qingyuan.yangshan": "yangshan"}, 30, "the city's row for the county")
    assert knows(levels.county.home(YANGCHENG), YINGDE) and knows(levels.city.home(YINGDE), XWB)
    routes = {r.prefix: r.goes_to for r in links.routes(levels.county.config, levels.county.db)}
    assert routes["qingyuan.yangshan"] == "local" and routes["*"] == "link:parent"
    result = run("link", "routes", "--home", levels.city.hub_home, "--json")
    assert result.exit_code == 0, result.output
    assert {"prefix": "qingyuan.yangshan", "goes_to": "link:yangshan", "note": "child hub, active"} in json.loads(result.output)


def test_county_unit_to_city_unit_with_receipts_end_to_end(levels: Levels) -> None:
    county, city = levels.county, levels.city
    mid, files = county.send(XXZX, [SWB], doc_number="阳信发〔2011〕21号")
    city.wait_hub(mid, "delivered", [SWB])
    # One read: the delivered receipt may be crossing back, so either state is right now, but
    # two reads could see it move in between (routed, then delivered: both comparisons fail).
    assert county.hub_states(mid) in ({SWB: "delivered"}, {SWB: "routed"})
    assert city.inbox_files(SWB, mid).items() >= files.items()
    sign_for(city.agent(SWB), mid)
    county.wait_hub(mid, "signed_for", [SWB])
    rows = county.wait_sent(XXZX, mid, "signed_for", [SWB])
    # The city unit's own signature reaches the county sender: non-repudiation end to end.
    receipt, signer = verify_receipt(rows[SWB].receipt or b"", county.agent(XXZX).trust)
    city_ca = load_certificate(city.config.ca_dir / "ca.crt")
    assert (receipt.recipient, receipt.event, signer.issuer) == (SWB, "signed_for", city_ca.subject)
    with county.db.read() as s:
        sent_bytes = envelope_of(s, ContentStore(county.config.content_dir), mid) or b""
    assert receipt.envelope_sha256 == hashlib.sha256(sent_bytes).hexdigest()  # the very bytes that crossed
    # Every hub on the way verified and recorded it, and kept the receipts.
    assert city.receipts(mid, "signed_for") == 1 and county.receipts(mid, "signed_for") == 1


def test_a_recall_crosses_the_link_and_a_city_unit_that_signed_keeps_it(levels: Levels) -> None:
    from docex.agent.recall import recall_document
    from docex.protocols.notice import verify_notice

    county, city = levels.county, levels.city
    mid, _ = county.send(XXZX, [SWB, ZFB], doc_number="阳信发〔2011〕23号")
    city.wait_hub(mid, "delivered", [SWB, ZFB])
    sign_for(city.agent(SWB), mid)
    wait_until(lambda: county.hub_states(mid).get(SWB) == "signed_for", 60, "signed_for back at the county hub")
    assert recall_document(county.agent(XXZX), mid, "文号有误") is True
    # Both hubs verify the sender's signed recall; the city unit that had not signed loses it.
    wait_until(lambda: city.hub_states(mid) == {SWB: "signed_for", ZFB: "recalled"}, 60, "recalled at the city hub")
    wait_until(lambda: (r := city.received(ZFB, mid)) is not None and r.state == "recalled", 60, "recalled at ZFB")
    kept = city.received(SWB, mid)
    assert kept is not None and kept.state == "signed_for"
    assert county.hub_states(mid) == {SWB: "signed_for", ZFB: "recalled"}
    notice = county.wait_notice(XXZX, mid, "recalled")  # from the sender's own hub, naming who kept it
    assert verify_notice(notice.der, county.agent(XXZX).trust).recipients == (SWB,)
    assert city.count(Receipt, Receipt.message_id == mid, Receipt.event == "recalled") == 1


def test_the_desks_address_book_groups_the_whole_network(levels: Levels) -> None:
    from docex.agent.desk.views import directory

    groups = {u["address"]: u["group"] for u in directory(levels.county.agent(XXZX))}
    assert (groups[YANGCHENG], groups[XWB]) == ("乡镇", "党委部门")
    assert (groups[SWB], groups[YINGDE]) == ("市直单位", "外县（市）单位")
    assert [u["name"] for u in directory(levels.county.agent(XXZX), "英德")] == ["中共英德市委办公室"]


def test_city_to_township_and_township_to_other_county_and_back(levels: Levels) -> None:
    county, city = levels.county, levels.city
    down, _ = city.send(SWB, [YANGCHENG], doc_number="清办发〔2011〕7号")
    across, _ = county.send(YANGCHENG, [YINGDE], doc_number="阳城发〔2011〕3号")
    county.wait_hub(down, "delivered", [YANGCHENG])
    city.wait_hub(down, "delivered", [YANGCHENG])
    city.wait_hub(across, "delivered", [YINGDE])
    sign_for(city.agent(YINGDE), across)
    back, _ = city.send(YINGDE, [YANGCHENG], doc_number="英办函〔2011〕9号")
    county.wait_hub(across, "signed_for", [YINGDE])
    county.wait_sent(YANGCHENG, across, "signed_for", [YINGDE])
    city.wait_hub(back, "delivered", [YANGCHENG])
    city.wait_sent(YINGDE, back, "delivered", [YANGCHENG])
    assert county.received(YANGCHENG, back) is not None and county.received(YANGCHENG, down) is not None


def test_units_with_city_certificates_validate_both_ways(levels: Levels) -> None:
    county, city = levels.county, levels.city
    city_ca = load_certificate(city.config.ca_dir / "ca.crt")
    assert county.agent(XWB).creds.sign_cert.issuer == city_ca.subject  # kept, not re-issued
    up, _ = county.send(XWB, [SWB, XXZX], doc_number="阳办发〔2011〕42号")
    down, _ = city.send(SWB, [XWB], doc_number="清办发〔2011〕8号")
    county.wait_hub(up, "delivered", [SWB, XXZX])
    county.wait_hub(down, "delivered", [XWB])
    for address, mid in ((SWB, up), (XXZX, up)):
        sign_for((city if address == SWB else county).agent(address), mid)
    rows = county.wait_sent(XWB, up, "signed_for", [SWB, XXZX])
    for address, row in rows.items():
        receipt, _ = verify_receipt(row.receipt or b"", county.agent(XWB).trust)
        assert receipt.recipient == address
    received = county.received(XWB, down)
    assert received is not None and received.sender == SWB
    back = city.wait_sent(SWB, down, "delivered", [XWB])
    receipt, signer = verify_receipt(back[XWB].receipt or b"", city.agent(SWB).trust)
    assert receipt.recipient == XWB and signer.issuer == city_ca.subject


def test_addresses_no_hub_knows_go_on_paper_with_a_signed_notice(levels: Levels) -> None:
    county = levels.county
    # Inside the network (the city's directory) but no unit: refused at the source, not sent.
    with pytest.raises(DocexError) as refused:
        county.send(XXZX, ["qingyuan.nosuch", SWB], doc_number="阳信发〔2011〕29号")
    assert refused.value.code == "unknown_recipient"
    # Outside the network: on paper, with the hub's signed notice.
    mid, _ = county.send(XXZX, ["guangdong.swb", SWB], doc_number="阳信发〔2011〕30号")
    wait_until(lambda: county.hub_states(mid) == {"guangdong.swb": "paper_route", SWB: "delivered"}, 60,
               f"paper routes of {mid}")
    wait_until(lambda: {a: r.state for a, r in county.sent(XXZX, mid).items()}
               == {"guangdong.swb": "paper_route", SWB: "delivered"}, 60, "paper notices at the sender")


def _publish(net: Network, routing_key: str, body: bytes, message_id: str, kind: str) -> None:
    """Put bytes on a hub's link queue as someone with the broker's admin login could."""
    b = net.config.broker
    from docex.broker import BrokerSettings, amqp_url

    settings = BrokerSettings(amqp_url(b.management_user, b.management_password, b.vhost))
    conn = pika.BlockingConnection(settings.parameters("docex-test-forger"))
    try:
        conn.channel().basic_publish("docex.deliver", routing_key, body,
                                     pika.BasicProperties(message_id=message_id, type=kind, delivery_mode=2))
    finally:
        conn.close()


def test_forged_envelopes_injected_on_the_link_are_refused(levels: Levels, pki: Pki, tmp_path: Path) -> None:
    county, city = levels.county, levels.city
    # Down: an envelope "from" the city office, signed by a CA nobody trusts.
    pki.stranger.issue_unit(SWB, "假冒的市委办", tmp_path / "fake", None)
    from docex.pki.credentials import UnitCredentials

    fake = UnitCredentials.load(tmp_path / "fake", None)
    manifest = Manifest(message_id=new_message_id(), sender=SWB, recipients=(YANGCHENG,), title="伪造", doc_number="假〔2011〕1号")
    body = envelope.pack(manifest, document_files("forged"), fake, [county.enc_cert(YANGCHENG)])
    _publish(city, "link.yangshan", body, manifest.message_id, messages.DOCUMENT)
    refused = wait_until(lambda: county.rejections(manifest.message_id), 60, "the county refusing the forgery")
    assert (refused[0].code, refused[0].sender) == ("certificate_untrusted", "parent")
    # Up: a genuine city signature arriving from the county's side cannot be the city's own unit.
    mid2 = new_message_id()
    m2 = Manifest(message_id=mid2, sender=ZFB, recipients=(SWB,), title="伪造", doc_number="假〔2011〕2号")
    body2 = envelope.pack(m2, document_files("forged"), city.agent(ZFB).creds, [city.enc_cert(SWB)])
    _publish(county, "link.parent", body2, mid2, messages.DOCUMENT)
    refused2 = wait_until(lambda: city.rejections(mid2), 60, "the city refusing the misrouted envelope")
    assert (refused2[0].code, refused2[0].sender) == ("sender_mismatch", "yangshan")
    assert county.received(YANGCHENG, manifest.message_id) is None and city.received(SWB, mid2) is None
    assert county.count(Document, Document.message_id == manifest.message_id) == 0


def test_directory_not_signed_by_the_prefix_owner_is_refused(levels: Levels) -> None:
    county, city = levels.county, levels.city
    identity = county.net.config.hub_dir
    from docex.pki.keys import load_private_key

    cert, key = load_certificate(identity / "server.crt"), load_private_key(identity / "server.key", None)
    fake = DirectorySnapshot(prefix="qingyuan.yangshan", version=10_000, generated_at="2011-08-20T00:00:00+08:00")
    der = sign_directory(fake, cert, key)  # the county's own key, but arriving from the city's side
    _publish(city, "link.yangshan", der, "directory|forged|1", messages.DIRECTORY)
    from docex.protocols.statement import sign_statement

    claim = DirectorySnapshot(prefix="qingyuan", version=10_000, generated_at="2011-08-20T00:00:00+08:00")
    der2 = sign_statement("directory", claim.to_payload(), cert, key)  # the city's prefix, the county's key
    _publish(city, "link.yangshan", der2, "directory|forged|2", messages.DIRECTORY)
    wait_until(lambda: len(county.rejections(code="directory_untrusted")) >= 2, 60, "both snapshots refused")
    with county.db.read() as s:
        versions = {r.prefix: r.version for r in s.execute(select(RemoteDirectory)).scalars()}
    assert versions.get("qingyuan", 0) < 10_000 and "qingyuan.yangshan" not in versions


@pytest.mark.slow
def test_link_down_queues_durably_and_senders_see_waiting_for_link(levels: Levels) -> None:
    county, city = levels.county, levels.city
    levels.stop_bridge()
    try:
        ups = [county.send(XXZX, [SWB], doc_number=f"阳信发〔2011〕{40 + i}号")[0] for i in range(3)]
        downs = [city.send(SWB, [YANGCHENG], doc_number=f"清办发〔2011〕{40 + i}号")[0] for i in range(2)]
        for mid in ups:
            county.wait_sent(XXZX, mid, "waiting_for_link", [SWB])
        for mid in downs:
            city.wait_sent(SWB, mid, "waiting_for_link", [YANGCHENG])
        assert all(county.hub_states(mid) == {SWB: "routed"} for mid in ups)
        # The broker's management view lists a closed connection until its next statistics
        # round (5 s by default), so "not connected" is waited for, like the backlog.
        report = wait_until(lambda: (r := levels.status(county)).backlog_out and r.backlog_out >= 3
                            and r.connected is False and r, 30, "backlog and link down")
        assert report.oldest_waiting_seconds is not None
        result = run("link", "status", "--home", county.hub_home)
        assert result.exit_code == 0 and "未连接" in result.output, result.output
    finally:
        levels.start_bridge()
    for mid in ups:
        city.wait_hub(mid, "delivered", [SWB])
        county.wait_sent(XXZX, mid, "delivered", [SWB])
    for mid in downs:
        county.wait_hub(mid, "delivered", [YANGCHENG])


@pytest.mark.slow
def test_bridge_killed_mid_stream_loses_and_duplicates_nothing(levels: Levels) -> None:
    county, city = levels.county, levels.city
    n = 30
    ups = [county.send(XXZX, [SWB], doc_number=f"阳信发〔2011〕{100 + i}号")[0] for i in range(n)]
    downs = [city.send(SWB, [YANGCHENG], doc_number=f"清办发〔2011〕{100 + i}号")[0] for i in range(n)]

    def arrived(net: Network, ids: list[str]) -> int:
        return net.count(Document, Document.message_id.in_(ids))

    wait_until(lambda: arrived(city, ups) + arrived(county, downs) >= 3, 60, "the stream to start")
    levels.stop_bridge(kill=True)
    levels.start_bridge()
    for net, sender, ids, recipient in ((city, county, ups, SWB), (county, city, downs, YANGCHENG)):
        for mid in ids:
            net.wait_hub(mid, "delivered", [recipient], timeout=90)
            sender.wait_hub(mid, "delivered", [recipient], timeout=90)
        with net.db.read() as s:
            accepted = s.execute(select(AuditEntry.subject, func.count()).where(
                AuditEntry.action == "document.accept", AuditEntry.subject.in_(ids)).group_by(AuditEntry.subject)).all()
        assert sorted(c for _, c in accepted) == [1] * n  # each accepted once at the far hub
        with sender.db.read() as s:
            receipts = s.execute(select(func.count()).select_from(Receipt).where(
                Receipt.message_id.in_(ids), Receipt.event == "delivered")).scalar_one()
        assert receipts == n
        assert all(net.received(recipient, mid) is not None for mid in ids)


@pytest.mark.slow
def test_pause_holds_new_documents_and_resume_releases_them(levels: Levels) -> None:
    county, city = levels.county, levels.city
    links.pause(county.config, county.db, "parent")
    try:
        mid, _ = county.send(XXZX, [SWB], doc_number="阳信发〔2011〕60号")
        county.wait_hub(mid, "accepted", [SWB])
        with county.db.read() as s:
            held = s.execute(select(Outbox).where(Outbox.message_id == mid)).scalars().all()
        assert held and all(r.published_at is None for r in held)
        county.wait_sent(XXZX, mid, "waiting_for_link", [SWB])
        report = levels.status(county)
        assert (report.state, report.held_out >= 1, report.connected) == ("paused", True, False)
    finally:
        released = links.resume(county.config, county.db, "parent")
    assert released >= 1
    city.wait_hub(mid, "delivered", [SWB], timeout=90)
    # Drain: what is queued flows out, then the link pauses by itself.
    result = run("link", "drain", "--home", county.hub_home, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["state"] == "draining", result.output
    wait_until(lambda: levels.status(county).state == "paused", 60, "the drained link to pause")
    result = run("link", "resume", "--home", county.hub_home)
    assert result.exit_code == 0 and "已恢复" in result.output, result.output
    mid2, _ = county.send(XXZX, [SWB], doc_number="阳信发〔2011〕61号")
    city.wait_hub(mid2, "delivered", [SWB], timeout=90)


def test_link_status_reports_the_bridge(levels: Levels) -> None:
    county, city = levels.county, levels.city
    mid, _ = county.send(XXZX, [SWB], doc_number="阳信发〔2011〕70号")
    city.wait_hub(mid, "delivered", [SWB])
    # The broker's statistics lag a few seconds behind a reconnect (after the pause test).
    report = wait_until(lambda: (r := levels.status(county)).bridge and r.bridge.get("connected") and r.connected and r,
                        60, "bridge report")
    assert report.connected_since
    assert report.bridge["pumps"]["out"]["moved"] >= 1 and report.documents_out >= 1
    parent_view = wait_until(lambda: (r := levels.status(city)).connected and r, 60, "the parent's view")
    assert (parent_view.name, parent_view.role) == ("yangshan", "child")
    assert parent_view.documents_in >= 1
    result = run("link", "status", "--home", county.hub_home, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["bridge"]["link"] == "yangshan"
    result = run("bridge", "status", "--home", levels.cc.bridge_home)
    assert result.exit_code == 0 and "上行" in result.output, result.output
    with county.db.read() as s:
        assert s.execute(select(func.count()).select_from(Outbox).where(Outbox.published_at.is_(None))).scalar_one() == 0


def test_the_bridge_logs_in_to_both_brokers_by_certificate_over_tls(levels: Levels) -> None:
    """With the broker's TLS (`docex broker tls`), the bridge holds no password: at the
    parent (the far side) and at the child it logs in with a certificate of that hub's CA."""
    import tomllib

    import requests

    config = tomllib.loads((levels.cc.bridge_home / "bridge.toml").read_text("utf-8"))
    for side in ("parent", "child"):
        assert config[side]["url"].startswith(f"amqps://{config[side]['user']}@"), side
        assert config[side]["tls_cert"] and (levels.cc.bridge_home / config[side]["tls_key"]).stat().st_mode & 0o077 == 0
    for net, side in ((levels.city, "parent"), (levels.county, "child")):
        b = net.config.broker
        path = f"/api/vhosts/{requests.utils.quote(b.vhost, safe='')}/connections"

        def bridge_connections(b=b, path=path, side=side) -> list[dict]:  # type: ignore[type-arg]
            data = requests.get(b.management_url + path, auth=(b.management_user, b.management_password), timeout=10).json()
            return [c for c in data if c["user"] == config[side]["user"]]

        conns = wait_until(bridge_connections, 30, f"the bridge connected at the {side}")
        assert all(c["ssl"] and c["auth_mechanism"] == "EXTERNAL" for c in conns), conns
