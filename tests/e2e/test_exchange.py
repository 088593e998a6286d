"""A real county network (hub + 12 unit agents as processes, SQLite, the local RabbitMQ):
documents to one, several and all units arrive byte for byte, receipts reach the sender,
sign-for and return travel back, the directory stays current at every agent, and the
audit chain verifies (and notices tampering)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from sqlalchemy import select, update

from docex.agent.actions import return_document, sign_for
from docex.broker import BrokerSettings, amqp_url
from docex.broker.topology import DELIVER_EXCHANGE
from docex.hub.models import AuditEntry, Receipt
from docex.pki.keys import load_certificate, load_private_key
from docex.protocols import messages
from docex.protocols.directory import DirectorySnapshot, UnitEntry, sign_directory
from docex.protocols.manifest import utcnow_iso
from tests.cli.runner import run
from tests.conftest import Pki
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import PREFIX, SENDER, Network, knows, wait_until

pytestmark = pytest.mark.rabbitmq

XWB, ZFB, JW = "qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb", "qingyuan.yangshan.jw"
NEW_UNIT = "qingyuan.yangshan.e2exin"


@pytest.fixture(scope="module")
def county(network: NetworkFactory, pki: Pki) -> Iterator[Network]:
    # The county also trusts the city's CA (units keeping city certificates): a directory
    # signed by a city-issued "hub" certificate must still be refused by our agents.
    net = network(12, trust=(pki.city.directory / "ca.crt",))
    net.start_hub()
    *grouped, alone = net.addresses
    net.start_agents(grouped, per_process=6)
    net.start_agents([alone])  # its own process: the offline test stops it
    yield net


def _assert_intact(net: Network, address: str, message_id: str, files: dict[str, bytes]) -> None:
    got = net.inbox_files(address, message_id)
    assert {k: v for k, v in got.items() if k != "manifest.json"} == files, address
    manifest = json.loads(got["manifest.json"])
    assert manifest["message_id"] == message_id and manifest["sender"] == SENDER


def test_one_recipient_gets_it_intact_and_receipts_reach_the_sender(county: Network) -> None:
    mid, files = county.send(SENDER, [ZFB], doc_number="阳信发〔2011〕11号")

    county.wait_hub(mid, "delivered", [ZFB])
    _assert_intact(county, ZFB, mid, files)
    rows = county.wait_sent(SENDER, mid, "delivered", [ZFB])
    assert rows[ZFB].receipt is not None  # the recipient's signed receipt, kept as proof

    sign_for(county.agent(ZFB), mid)
    county.wait_hub(mid, "signed_for", [ZFB])
    county.wait_sent(SENDER, mid, "signed_for", [ZFB])
    received = county.received(ZFB, mid)
    assert received is not None and received.state == "signed_for"
    assert county.receipts(mid, "delivered") == 1 and county.receipts(mid, "signed_for") == 1
    delivery = county.deliveries(mid)[ZFB]
    assert delivery.delivered_at is not None and delivery.signed_for_at is not None


def test_main_and_copy_recipients_sign_for_or_return(county: Network) -> None:
    to, cc = [XWB, ZFB], [JW, county.addresses[4], county.addresses[5]]
    mid, files = county.send(SENDER, to, cc, doc_number="阳信发〔2011〕12号", priority="加急")
    everyone = [*to, *cc]

    county.wait_hub(mid, "delivered", everyone)
    for address in everyone:
        _assert_intact(county, address, mid, files)
    manifest = json.loads(county.inbox_files(JW, mid)["manifest.json"])
    assert manifest["recipients"] == to and manifest["cc"] == cc and manifest["priority"] == "加急"
    county.wait_sent(SENDER, mid, "delivered", everyone)

    return_document(county.agent(JW), mid, "请补充附件后重新发送")
    for address in everyone:
        if address != JW:
            sign_for(county.agent(address), mid)
    wait_until(lambda: county.hub_states(mid) == {a: "returned" if a == JW else "signed_for" for a in everyone},
               60, "sign-for and return at the hub")
    delivery = county.deliveries(mid)[JW]
    assert delivery.reason == "请补充附件后重新发送" and delivery.returned_at is not None

    def sender_view() -> dict[str, str]:
        return {a: r.state for a, r in county.sent(SENDER, mid).items()}

    wait_until(lambda: sender_view() == {a: "returned" if a == JW else "signed_for" for a in everyone},
               60, "the sender's view of sign-for and return")
    assert county.sent(SENDER, mid)[JW].reason == "请补充附件后重新发送"


def test_document_to_every_unit_arrives_once_everywhere(county: Network) -> None:
    others = [a for a in county.addresses if a != SENDER]
    mid, files = county.send(SENDER, others, doc_number="阳信发〔2011〕13号", priority="特急")

    county.wait_hub(mid, "delivered", others, timeout=90)
    for address in others:
        _assert_intact(county, address, mid, files)
        assert county.received(address, mid) is not None
    county.wait_sent(SENDER, mid, "delivered", others, timeout=90)
    assert county.receipts(mid, "delivered") == len(others)
    actions = [e.action for e in county.audit(mid)]
    assert actions.count("document.accept") == 1 and actions.count("receipt.delivered") == len(others)


def test_an_address_off_the_network_goes_on_paper_and_the_sender_is_told(county: Network) -> None:
    province = "guangdong.swb"  # outside the county's prefix, and this hub has no link
    mid, files = county.send(SENDER, [ZFB, province], doc_number="阳信发〔2011〕17号")
    wait_until(lambda: county.hub_states(mid) == {ZFB: "delivered", province: "paper_route"}, 60,
               "delivered on the network, paper for the rest")
    assert county.deliveries(mid)[province].code == "paper_route"
    notice = county.wait_notice(SENDER, mid, "paper_route")
    assert notice.event == "paper_route"
    wait_until(lambda: {a: r.state for a, r in county.sent(SENDER, mid).items()}
               == {ZFB: "delivered", province: "paper_route"}, 60, "the sender's view")
    _assert_intact(county, ZFB, mid, files)


def test_track_documents_inbox_and_sent_commands_agree(county: Network) -> None:
    mid, _ = county.send(SENDER, [XWB], doc_number="阳信发〔2011〕14号")
    county.wait_sent(SENDER, mid, "delivered", [XWB])

    track = run("track", "--home", county.hub_home, mid, "--json")
    assert track.exit_code == 0, track.output
    detail = json.loads(track.output)
    assert [(r["address"], r["state"]) for r in detail["recipients"]] == [(XWB, "delivered")]
    assert detail["recipients"][0]["delivered_at"] and detail["receipts"][0]["event"] == "delivered"
    text = run("track", "--home", county.hub_home, mid)
    assert "已送达" in text.output and "阳信发〔2011〕14号" in text.output

    docs = run("documents", "--home", county.hub_home, "--unit", XWB, "--state", "delivered", "--json")
    assert mid in [d["message_id"] for d in json.loads(docs.output)]
    inbox = run("inbox", "--home", county.home(XWB), "--json")
    assert mid in [d["message_id"] for d in json.loads(inbox.output)]
    sent = run("sent", "--home", county.home(SENDER), "--json")
    mine = next(d for d in json.loads(sent.output) if d["message_id"] == mid)
    assert mine["recipients"][0]["state"] == "delivered" and mine["recipients"][0]["receipt"] is True
    unknown = run("track", "--home", county.hub_home, "00000000-0000-4000-8000-000000000000")
    assert unknown.exit_code == 2 and "[unknown_document]" in unknown.stderr


def test_office_system_drops_a_document_into_the_outbox_folder(county: Network) -> None:
    folder = county.home(SENDER) / "outbox"
    (folder / "通知.txt").write_bytes("请各单位按时参加培训。".encode())
    (folder / "通知.json").write_text(json.dumps({"to": [ZFB], "title": "关于参加培训的通知",
                                                 "doc_number": "阳信发〔2011〕15号", "files": ["通知.txt"]},
                                                ensure_ascii=False), "utf-8")
    sent_dir = wait_until(lambda: next((p for p in (folder / "sent").glob("*") if (p / "通知.json").exists()), None),
                          30, "the outbox folder picked up")
    mid = sent_dir.name
    county.wait_hub(mid, "delivered", [ZFB])
    assert county.inbox_files(ZFB, mid)["通知.txt"] == "请各单位按时参加培训。".encode()
    assert not (folder / "通知.json").exists()


def test_directory_reaches_running_agents_and_an_offline_one_catches_up(county: Network, tmp_path: Path) -> None:
    offline = county.addresses[-1]
    county.stop(county.hosts[offline], signal.SIGTERM)
    # Sending works while the service is down: it goes when the service starts.
    note = tmp_path / "回复.txt"
    note.write_bytes("已收悉。".encode())
    queued = run("send", "--home", county.home(offline), "--to", SENDER, "--title", "关于培训的回复",
                 "--doc-number", "阳回〔2011〕1号", note, "--json")
    assert queued.exit_code == 0, queued.output
    reply_id = json.loads(queued.output)["message_id"]

    # The hub has published its directory once (whole); the next change goes out as a delta.
    wait_until(lambda: " published to " in county.log_text("hub"), 60, "the hub's first publication")
    deltas = county.log_text("hub").count("(delta, ")
    added = run("unit", "add", "--home", county.hub_home, "--address", NEW_UNIT, "--name", "阳山县测试新单位",
                "--out", tmp_path / "new-agent")
    assert added.exit_code == 0, added.output
    county.net.agents[NEW_UNIT] = tmp_path / "new-agent"  # so teardown removes its broker user

    # Running agents learn it from the hub's publication (every 5 s here; a minute at most).
    for address in (SENDER, ZFB):
        wait_until(lambda a=address: knows(county.home(a), NEW_UNIT), 60, f"{address} knows {NEW_UNIT}")
    assert not knows(county.home(offline), NEW_UNIT)
    assert county.log_text("hub").count("(delta, ") > deltas  # the change went out as a delta, not whole

    # The newcomer is reachable at once by a unit that learned its certificate that way.
    county.start_agents([NEW_UNIT])
    mid, files = county.send(SENDER, [NEW_UNIT], doc_number="阳信发〔2011〕16号")
    county.wait_hub(mid, "delivered", [NEW_UNIT])
    assert county.inbox_files(NEW_UNIT, mid)["附件1.bin"] == files["附件1.bin"]

    county.start_agents([offline])
    wait_until(lambda: knows(county.home(offline), NEW_UNIT), 60, f"{offline} caught up")
    county.wait_hub(reply_id, "delivered", [SENDER])


def _forged_directory(signer_dir: Path, version: int) -> bytes:
    fake = UnitEntry(address=f"{PREFIX}.jiamao", name="假冒单位",
                     enc_cert=(signer_dir / "server.crt").read_text())
    snap = DirectorySnapshot(prefix=PREFIX, version=version, generated_at=utcnow_iso(), units=(fake,))
    return sign_directory(snap, load_certificate(signer_dir / "server.crt"),
                          load_private_key(signer_dir / "server.key", None))


def test_directory_signed_by_another_hub_is_refused(county: Network, pki: Pki, tmp_path: Path) -> None:
    target = ZFB
    host = county.hosts[target]
    before = county.log_text(host).count("refused a directory snapshot")
    version = county.agent(target).directory_version()
    # One "hub" certificate from a CA nobody trusts, one from the city's CA, which the
    # county trusts for unit certificates but which is not our hub's.
    pki.stranger.issue_server("冒充的交换中心", tmp_path / "stranger", None, hub_prefix=PREFIX)
    pki.city.issue_server("市里的另一个中心", tmp_path / "city", None, hub_prefix=PREFIX)
    forged = [_forged_directory(tmp_path / "stranger", version + 100), _forged_directory(tmp_path / "city", version + 100)]

    b = county.config.broker
    admin = BrokerSettings(url=amqp_url(b.management_user, b.management_password, b.vhost))  # the hub's administrator
    conn = pika.BlockingConnection(admin.parameters("docex-test-forger"))
    try:
        channel = conn.channel()
        for index, der in enumerate(forged):
            channel.basic_publish(DELIVER_EXCHANGE, target, der, pika.BasicProperties(
                message_id=f"forged-{index}", type=messages.DIRECTORY, delivery_mode=2))
    finally:
        conn.close()

    # Identical warnings are logged once (then counted), so one line may stand for both.
    wait_until(lambda: county.log_text(host).count("refused a directory snapshot") >= before + 1, 60,
               "the forged snapshots refused")
    county.wait_empty(f"unit.{target}", 60, "both refused and acknowledged, not stuck")
    assert not knows(county.home(target), f"{PREFIX}.jiamao")
    assert county.agent(target).directory_version() < version + 100


def test_audit_chain_verifies_and_an_update_breaks_it(county: Network) -> None:
    ok = run("audit", "verify", "--home", county.hub_home, "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["ok"] is True and report["entries"] > 20

    with county.db.read() as s:
        victim = s.execute(select(AuditEntry).where(AuditEntry.action == "document.accept")
                           .order_by(AuditEntry.id)).scalars().first()
    assert victim is not None
    with county.db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.id == victim.id).values(detail=victim.detail + " "))
    try:
        broken = run("audit", "verify", "--home", county.hub_home, "--json")
        assert broken.exit_code == 1
        result = json.loads(broken.output)
        assert result["ok"] is False and result["first_bad"] == victim.id
        plain = run("audit", "verify", "--home", county.hub_home)
        assert plain.exit_code == 1 and "BROKEN" in plain.stderr
    finally:
        with county.db.session() as s:
            s.execute(update(AuditEntry).where(AuditEntry.id == victim.id).values(detail=victim.detail))
    assert run("audit", "verify", "--home", county.hub_home).exit_code == 0
    assert county.count(Receipt) > 0
