"""Issue 10's "keep them fixed" list against the running exchange: a real hub and five
agents on the local RabbitMQ, attacked by registered units with their own keys and broker
logins. Each case asserts the named refusal (at the hub, or at the recipient, which then
reports it), that nothing was written outside the homes' own folders, and that a genuine
document between two other units was delivered meanwhile."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from docex.agent.store import Outgoing
from docex.hub.models import Rejection
from docex.pki import cms
from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.protocols import messages
from docex.protocols.receipt import make_receipt
from tests.e2e.conftest import NetworkFactory, network  # noqa: F401 - the module's network fixture
from tests.e2e.support import SENDER, Network, document_files, wait_until
from tests.protocols import forge
from tests.samples import one_line_pdf
from tests.security.hostile import Watch

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

XWB, ZFB, JW, YC = "qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb", "qingyuan.yangshan.jw", "qingyuan.yangshan.yangcheng"
LIMIT = 512 * 1024


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:  # noqa: F811
    net = network(5, max_envelope_bytes=LIMIT)
    net.start_hub()
    net.start_agents(per_process=5)
    yield net


def watch_from(net: Network) -> Watch:
    return Watch(net, JW, YC)


def refused(net: Network, key: str, codes: set[str], mid: str | None = None) -> str:
    """Refused at the hub with one of `codes`, recorded under the header's message id (`mid`)
    or, when there is no readable header, under the AMQP message id (`key`)."""
    def found() -> list[Rejection]:
        return [r for k in {key, mid or key} for r in net.rejections(k) if r.code in codes]

    rows = wait_until(found, 60, f"{key} refused with {codes}")
    assert Path(rows[0].kept_at).resolve().is_relative_to((net.hub_home / "refused").resolve())
    return rows[0].code


def quarantined(net: Network, mid: str, recipient: str, code: str) -> None:
    """Delivered by the hub (it cannot see inside), refused by the recipient with `code`."""
    net.wait_hub(mid, "rejected", [recipient], timeout=90)
    assert net.deliveries(mid)[recipient].code == code
    rows = net.quarantined(recipient, mid)
    assert len(rows) == 1 and rows[0].code == code
    assert Path(rows[0].path).resolve().is_relative_to((net.home(recipient) / "quarantine").resolve())
    assert net.received(recipient, mid) is None and net.inbox_files(recipient, mid) == {}


def _creds_from(ca: CertificateAuthority, address: str, folder: Path) -> UnitCredentials:
    ca.issue_unit(address, "冒充的单位", folder, None)
    return UnitCredentials.load(folder, None)


def _self_signed_like(real: UnitCredentials) -> SimpleNamespace:
    """A self-signed certificate copying the unit's name and extensions (its SAN too)."""
    return _issued_like(real, real.sign_cert.subject)


def _issued_like(real: UnitCredentials, issuer: x509.Name) -> SimpleNamespace:
    """The unit's name and extensions (its SAN too) on the unit's key, signed by that same
    key under `issuer`: the hub CA's DN makes a look-alike CA, the unit's own a self-signed one."""
    key = real.sign_key
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(real.sign_cert.subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30)))
    for ext in real.sign_cert.extensions:
        if ext.oid.dotted_string not in ("2.5.29.35", "2.5.29.14", "2.5.29.31", "1.3.6.1.5.5.7.1.1"):
            builder = builder.add_extension(ext.value, ext.critical)
    return SimpleNamespace(address=real.address, sign_cert=builder.sign(key, hashes.SHA256()), sign_key=key)


def test_forged_signers_are_refused_as_untrusted(county: Network, tmp_path: Path) -> None:
    watch = watch_from(county)
    stranger = CertificateAuthority.init(tmp_path / "stranger-ca", "不明机构", None)
    hub_ca = CertificateAuthority.open(county.config.ca_dir, None)
    real = county.agent(SENDER).creds
    signers = {
        "foreign CA": _creds_from(stranger, SENDER, tmp_path / "u1"),
        "look-alike CA": _issued_like(county.agent(SENDER).creds, hub_ca.certificate.subject),
        "self-signed": _self_signed_like(real),
    }
    keys = {}
    for what, signer in signers.items():
        files = document_files(what)
        m = forge.manifest(SENDER, [ZFB], files)
        body = forge.wrap(forge.package(m, files), m, signer, [county.enc_cert(ZFB)])  # type: ignore[arg-type]
        county.queue_raw(SENDER, m.message_id, body, [ZFB], record=False)
        keys[what] = m.message_id
    for what, key in keys.items():
        assert refused(county, key, {"certificate_untrusted", "signature_invalid"}, key) == "certificate_untrusted", what
        assert county.hub_states(key) == {} and county.received(ZFB, key) is None
    watch.check()


def test_a_header_naming_another_sender_and_a_replay_through_another_login(county: Network) -> None:
    watch = watch_from(county)
    me = county.agent(SENDER).creds
    files = document_files("冒名")
    m = forge.manifest(SENDER, [ZFB], files)
    body = forge.wrap(forge.package(m, files), m, me, [county.enc_cert(ZFB)], sender=JW)
    county.queue_raw(SENDER, m.message_id, body, [ZFB], record=False)
    assert refused(county, m.message_id, {"sender_mismatch"}, m.message_id) == "sender_mismatch"

    mid, _ = county.send(SENDER, [ZFB], title="关于重放测试的通知")
    county.wait_hub(mid, "delivered", [ZFB])
    with county.agent(SENDER).store.session() as s:
        genuine = s.query(Outgoing).filter(Outgoing.message_id == mid).one().body
    county.queue_raw(XWB, mid, genuine, [ZFB], key=f"{mid}|replayed", record=False)  # XWB's login, SENDER's bytes
    refused(county, f"{mid}|replayed", {"sender_mismatch"}, mid)
    assert county.received(ZFB, mid) is not None
    county.wait_sent(SENDER, mid, "delivered", [ZFB])  # the refused replay changes nothing for SENDER
    watch.check()


def test_tampering_with_any_layer_is_refused(county: Network) -> None:
    watch = watch_from(county)
    me, zfb = county.agent(SENDER).creds, county.agent(ZFB).creds
    cases: dict[str, tuple[str, bytes, set[str]]] = {}

    def genuine() -> tuple[str, bytes]:
        return county.pack(SENDER, [ZFB])

    for where, at in (("structure", 40), ("ciphertext", 0), ("signature", -5)):
        mid, body = genuine()
        tampered = bytearray(body)
        tampered[at if at else len(body) // 2] ^= 0x20
        cases[where] = (mid, bytes(tampered), {"signature_invalid", "malformed_envelope"})
    mid, body = genuine()
    title_at = body.find(b'"title":"')
    header = bytearray(body)
    header[title_at + 9 : title_at + 12] = "改".encode()
    cases["routing header"] = (mid, bytes(header), {"signature_invalid"})
    mid, body = genuine()
    cases["truncated"] = (mid, body[: len(body) // 3], {"malformed_envelope"})
    cases["garbage"] = (str(uuid.uuid4()), os.urandom(700), {"malformed_envelope"})
    cases["empty"] = (str(uuid.uuid4()), b"", {"malformed_envelope"})
    for mid, data, _ in cases.values():
        county.queue_raw(SENDER, mid, data, [ZFB], record=False)
    for what, (mid, _, codes) in cases.items():
        assert refused(county, mid, codes, mid) in codes, what
        assert county.hub_states(mid) == {}

    # inside the encryption the hub cannot look: the recipient refuses and reports
    files = document_files("内层")
    m = forge.manifest(SENDER, [ZFB], files)
    inner = bytearray(cms.sign(forge.package(m, files), me.sign_cert, me.sign_key))
    inner[len(inner) // 3] ^= 0x01
    encrypted = cms.encrypt(bytes(inner), [zfb.enc_cert])
    outer = cms.sign(encrypted, me.sign_cert, me.sign_key, content_type="authenticated_enveloped_data",
                     attributes={"docex_routing_header": forge.header_for(m, len(encrypted)).to_json()})
    county.queue_raw(SENDER, m.message_id, outer, [ZFB])
    quarantined(county, m.message_id, ZFB, "signature_invalid")
    watch.check()


def test_hostile_packages_are_quarantined_by_the_recipient(county: Network) -> None:
    watch = watch_from(county)
    me, zfb = county.agent(SENDER).creds, county.agent(ZFB).creds
    body_text = "正文".encode()

    def envelope(entries: list[forge.RawEntry], m: object) -> bytes:
        return forge.wrap(forge.raw_zip(entries), m, me, [zfb.enc_cert])  # type: ignore[arg-type]

    cases: dict[str, tuple[str, bytes]] = {}
    for what, name, code in (("path-like name", "../../../evil.txt", "unsafe_filename"),
                             ("absolute name", "/tmp/docex-evil.txt", "unsafe_filename"),
                             ("over-long name", "长" * 100 + ".txt", "unsafe_filename")):
        m = forge.manifest(SENDER, [ZFB], {name: body_text})
        cases[what] = (code, envelope([forge.entry("manifest.json", m.to_json()), forge.entry(name, body_text)], m))
        county.queue_raw(SENDER, m.message_id, cases[what][1], [ZFB])
        cases[what] = (code, m.message_id.encode())
    m = forge.manifest(SENDER, [ZFB], {"a.txt": body_text})
    dup = envelope([forge.entry("manifest.json", m.to_json()), forge.entry("a.txt", body_text), forge.entry("a.txt", b"evil")], m)
    county.queue_raw(SENDER, m.message_id, dup, [ZFB])
    cases["duplicate entries"] = ("malformed_envelope", m.message_id.encode())
    bomb, crc = forge.zeros_bomb(300)
    m = forge.manifest(SENDER, [ZFB], {"b.bin": b""})
    county.queue_raw(SENDER, m.message_id, envelope([forge.entry("manifest.json", m.to_json()),
                                                     forge.RawEntry("b.bin", bomb, 300 << 20, crc)], m), [ZFB])
    cases["ZIP bomb"] = ("too_large", m.message_id.encode())
    for code, mid in cases.values():
        quarantined(county, mid.decode(), ZFB, code)
    assert not Path("/tmp/docex-evil.txt").exists()
    assert not any(p.name == "evil.txt" for p in county.hub_home.parent.rglob("evil.txt"))
    watch.check()


def test_forged_receipts_notices_and_snapshots_are_refused(county: Network) -> None:
    watch = watch_from(county)
    mid, _ = county.send(SENDER, [ZFB], title="关于回执测试的通知")
    county.wait_hub(mid, "delivered", [ZFB])
    xwb = county.agent(XWB).creds
    zfb = county.agent(ZFB).creds
    forged: dict[str, tuple[str, bytes, str, str]] = {}
    # XWB signs "ZFB signed for it": its own signature, another unit's name
    _, der = make_receipt(message_id=mid, recipient=ZFB, event="signed_for", envelope_sha256="0" * 64,
                          cert=xwb.sign_cert, key=xwb.sign_key)
    forged["receipt in another unit's name"] = (XWB, der, messages.RECEIPT, "sender_mismatch")
    # XWB's own receipt for a document it never received
    _, der = make_receipt(message_id=mid, recipient=XWB, event="signed_for", envelope_sha256="0" * 64,
                          cert=xwb.sign_cert, key=xwb.sign_key)
    forged["receipt for a document not received"] = (XWB, der, messages.RECEIPT, "receipt_invalid")
    _, der = make_receipt(message_id=str(uuid.uuid4()), recipient=ZFB, event="delivered", envelope_sha256="0" * 64,
                          cert=zfb.sign_cert, key=zfb.sign_key)
    forged["receipt for a document never sent"] = (ZFB, der, messages.RECEIPT, "receipt_invalid")
    for kind in (messages.NOTICE, messages.DIRECTORY):
        body = cms.sign(json.dumps({"message_id": mid, "event": "rejected"}).encode(), xwb.sign_cert, xwb.sign_key)
        forged[f"{kind} from a unit"] = (XWB, body, kind, "malformed_envelope")
    keys = {}
    for n, (what, (unit, der, kind, _)) in enumerate(forged.items()):
        key = f"forged-{n}-{uuid.uuid4()}"
        with county.agent(unit).store.session() as s:
            s.add(Outgoing(kind=kind, message_id=key, body=der))
        keys[what] = key
    for what, (_, _, _, code) in forged.items():
        assert refused(county, keys[what], {code}) == code, what
    assert county.hub_states(mid) == {ZFB: "delivered"}  # nothing moved the genuine delivery
    county.wait_sent(SENDER, mid, "delivered", [ZFB])
    watch.check()


def test_hostile_text_is_stored_as_data_and_shown_as_text(county: Network) -> None:
    """SQL and markup through a title, a return reason and a unit name: stored byte for byte,
    searched as data, escaped in the HTML report, quoted in the CSV, text in the dashboard."""
    from fastapi.testclient import TestClient

    from docex.hub.api import create_app, hash_password
    from docex.hub.config import ApiConfig
    from docex.hub.context import HubContext
    from docex.hub.models import Document
    from docex.hub.reports import build_report, to_csv, to_html
    from tests.cli.runner import run

    watch = watch_from(county)
    title = "关于'); DROP TABLE documents; --<script>alert(1)</script>的通知"
    reason = "<img src=x onerror=alert(document.cookie)>' OR '1'='1"
    mid, _ = county.send(SENDER, [ZFB], title=title)
    county.wait_hub(mid, "delivered", [ZFB])
    assert run("return", "--home", county.home(ZFB), mid, "--reason", reason).exit_code == 0
    county.wait_hub(mid, "returned", [ZFB])
    name = "=HYPERLINK(\"http://evil\")<svg onload=alert(1)>"
    made = run("unit", "add", "--home", county.hub_home, "--address", "qingyuan.yangshan.xss", "--name", name,
               "--out", county.hub_home / "xss-unit")
    assert made.exit_code == 0, made.output

    config = county.config.with_changes(api=ApiConfig(users={"staff": hash_password("pw")}))
    c = TestClient(create_app(HubContext(config, county.db, identity=None)))  # type: ignore[arg-type]
    c.auth = ("staff", "pw")
    detail = c.get(f"/api/documents/{mid}").json()
    assert detail["title"] == title and reason in json.dumps(detail, ensure_ascii=False)
    assert [d["message_id"] for d in c.get("/api/documents", params={"q": "DROP TABLE"}).json()["items"]] == [mid]
    assert c.get("/api/documents", params={"q": "' OR '1'='1"}).json()["items"] == []
    assert county.count(Document) >= 1  # the table is still there
    units = {u["address"]: u for u in c.get("/api/units").json()["items"]}
    assert units["qingyuan.yangshan.xss"]["name"] == name

    report = build_report(HubContext(county.config, county.db, identity=None), dt.date(2000, 1, 1), dt.date(2100, 1, 1))  # type: ignore[arg-type]
    page = to_html(report)
    assert "<svg" not in page and "&lt;svg onload=alert(1)&gt;" in page
    assert "'=HYPERLINK" in to_csv(report)
    watch.check()


def test_the_dashboard_never_writes_markup() -> None:
    js = (Path(__file__).resolve().parents[2] / "docex" / "monitoring" / "dashboard" / "app.js").read_text("utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    assert "textContent" in js


def test_an_attachment_sealed_by_another_unit_is_quarantined(county: Network) -> None:
    """Every PDF of a package has its seals checked, not only the main one: an honest main
    PDF beside an attachment (a PDF by name, or by content only) sealed by another unit."""
    from dataclasses import replace

    from docex.agent.context import AgentContext
    from docex.agent.sealing import seal_pdf as seal_with

    def seal_pdf(ctx: AgentContext, pdf: bytes) -> bytes:  # sealed without a timestamp (no TSA runs here)
        return seal_with(AgentContext(replace(ctx.config, seal=replace(ctx.config.seal, tsa_url="")), ctx.creds,
                                      ctx.store), pdf)

    watch = watch_from(county)
    genuine = seal_pdf(county.agent(SENDER), one_line_pdf("genuine"))
    foreign = seal_pdf(county.agent(XWB), one_line_pdf("forged attachment"))
    ids = []
    for name in ("附件2.pdf", "附件2.bin"):
        mid, body = county.pack(SENDER, [ZFB], files={"正文.pdf": genuine, name: foreign})
        county.queue_raw(SENDER, mid, body, [ZFB])
        ids.append(mid)
    for mid in ids:
        quarantined(county, mid, ZFB, "seal_address_mismatch")
        county.wait_sent(SENDER, mid, "rejected", [ZFB])
    honest, body = county.pack(SENDER, [ZFB], files={"正文.pdf": genuine, "附件2.pdf": seal_pdf(county.agent(SENDER),
                                                                                          one_line_pdf("sealed too"))})
    county.queue_raw(SENDER, honest, body, [ZFB])
    county.wait_hub(honest, "delivered", [ZFB])
    got = county.received(ZFB, honest)
    assert got is not None and got.seal_status == "valid"
    watch.check()


def test_replays_unknown_and_disabled_recipients_and_oversize_are_refused(county: Network, tmp_path: Path) -> None:
    """The same id with the same bytes is harmless, with new bytes `duplicate`; a recipient
    nobody registered, a disabled one, an envelope over the hub's limit: each refused by
    name at the hub, nothing delivered, the sender told."""
    from docex.hub.models import Document
    from tests.cli.runner import run

    watch = watch_from(county)
    mid, _ = county.send(SENDER, [ZFB], title="关于重放的通知")
    county.wait_hub(mid, "delivered", [ZFB])
    with county.agent(SENDER).store.session() as s:
        genuine = s.query(Outgoing).filter(Outgoing.message_id == mid).one().body
    _, new_bytes = county.pack(SENDER, [ZFB], message_id=mid)
    county.queue_raw(SENDER, mid, genuine, [ZFB], key=f"{mid}|same-bytes", record=False)
    county.queue_raw(SENDER, mid, new_bytes, [ZFB], key=f"{mid}|new-bytes", record=False)
    assert refused(county, mid, {"duplicate"}, mid) == "duplicate"

    nobody = "qingyuan.yangshan.nosuch"
    unknown, body = county.pack(SENDER, [ZFB, nobody], off_network=[nobody])
    county.queue_raw(SENDER, unknown, body, [ZFB, nobody], record=False)

    disabled = "qingyuan.yangshan.tingyong"
    made = run("unit", "add", "--home", county.hub_home, "--address", disabled, "--name", "停用的单位",
               "--out", tmp_path / "disabled-unit")
    assert made.exit_code == 0, made.output
    to_disabled, body = county.pack(SENDER, [disabled])  # encrypted to it while it was enabled
    assert run("unit", "disable", "--home", county.hub_home, disabled).exit_code == 0
    county.queue_raw(SENDER, to_disabled, body, [disabled], record=False)

    oversize, body = county.pack(SENDER, [ZFB], files={"大附件.bin": os.urandom(LIMIT + 1024)})
    assert len(body) > LIMIT
    county.queue_raw(SENDER, oversize, body, [ZFB], record=False)

    for key, code in ((unknown, "unknown_recipient"), (to_disabled, "recipient_disabled"), (oversize, "too_large")):
        assert refused(county, key, {code}, key) == code
        assert county.hub_states(key) == {} and county.count(Document, Document.message_id == key) == 0
        county.wait_notice(SENDER, key, code)
    # The same bytes again were neither refused nor accepted twice; the new bytes changed nothing.
    def published() -> bool:
        with county.agent(SENDER).store.session() as s:
            return s.query(Outgoing).filter(Outgoing.sent_at.is_(None)).first() is None

    county.wait_empty("hub.ingress", 60, "the sender's copies all handled by the hub", before=published)
    assert [r.code for r in county.rejections(mid)] == ["duplicate"]
    assert county.count(Document, Document.message_id == mid) == 1 and county.hub_states(mid) == {ZFB: "delivered"}
    assert county.inbox_files(ZFB, mid) != {} and county.received(ZFB, oversize) is None
    county.wait_sent(SENDER, mid, "delivered", [ZFB])
    watch.check()


def test_a_revoked_signer_is_refused_and_a_disabled_unit_cannot_reach_the_broker(county: Network) -> None:
    """Last in the module: it takes XWB off the network."""
    import pika.exceptions

    from tests.cli.runner import run

    watch = watch_from(county)
    before, _ = county.send(XWB, [ZFB], title="关于吊销前发送的通知")
    county.wait_hub(before, "delivered", [ZFB])
    serial = f"{county.agent(XWB).creds.sign_cert.serial_number:x}"
    assert run("pki", "revoke", "--dir", county.hub_home / "ca", "--serial", serial, "--reason", "key_compromise",
               "--insecure-no-passphrase").exit_code == 0
    mid, body = county.pack(XWB, [ZFB])
    county.queue_raw(XWB, mid, body, [ZFB], record=False)
    assert refused(county, mid, {"certificate_revoked"}, mid) == "certificate_revoked"
    assert county.hub_states(mid) == {} and county.received(ZFB, mid) is None
    assert county.hub_states(before) == {ZFB: "delivered"}  # what was accepted before stays accepted

    assert run("unit", "disable", "--home", county.hub_home, XWB).exit_code == 0
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        county.unit_connection(XWB).close()
    watch.check()
