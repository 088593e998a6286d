"""Evidence bundles without a network: built from real statements (a real envelope, the
hub's accepted notice, the recipient's delivered and signed-for receipts, each
timestamped), they verify offline with only the CA; any changed byte fails; the delivered
receipt survives the signed-for one; ten years on the bundle asks for renewal, and a
renewed bundle verifies again."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.timestamps import Stamper, add_signature_timestamp, local_stamper
from docex.pki.tsa import TimeStampAuthority
from docex.protocols import bundle, envelope
from docex.protocols.evidence import read_evidence
from docex.protocols.manifest import Manifest, new_message_id
from docex.protocols.notice import make_notice
from docex.protocols.receipt import make_receipt
from tests.conftest import Pki
from tests.protocols.conftest import Hub


@pytest.fixture(scope="module")
def stamper(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Stamper:
    folder = tmp_path_factory.mktemp("tsa")
    pki.county.issue_tsa("阳山县信息中心时间戳服务", folder, None)
    return local_stamper(TimeStampAuthority.load(folder, None))


@pytest.fixture(scope="module")
def parts(a: UnitCredentials, b: UnitCredentials, county_hub: Hub, stamper: Stamper) -> bundle.BundleParts:
    mid = new_message_id()
    manifest = Manifest(message_id=mid, sender=a.address, recipients=(b.address,), title="关于推行电子公文交换的通知",
                        doc_number="阳信发〔2026〕7号")
    env, inner = envelope.pack_layers(manifest, {"通知.txt": "正文".encode()}, a, [b.enc_cert])
    digest = hashlib.sha256(env).hexdigest()
    _, accepted = make_notice(message_id=mid, event="accepted", code="accepted", message="已接收", recipients=(b.address,),
                              hub=county_hub.prefix, cert=county_hub.cert, key=county_hub.key, envelope_sha256=digest)
    _, delivered = make_receipt(message_id=mid, recipient=b.address, event="delivered", envelope_sha256=digest,
                                cert=b.sign_cert, key=b.sign_key)
    _, signed = make_receipt(message_id=mid, recipient=b.address, event="signed_for", envelope_sha256=digest,
                             cert=b.sign_cert, key=b.sign_key, person="王科长")
    stamped = [add_signature_timestamp(d, stamper) for d in (accepted, delivered, signed)]
    # the unstamped original of a receipt is kept too; the bundle takes the stamped copy
    return bundle.BundleParts(message_id=mid, envelope=env, inner=inner, evidences=[delivered, *stamped],
                              exported_by=a.address)


@pytest.fixture(scope="module")
def data(parts: bundle.BundleParts, stamper: Stamper) -> bytes:
    return bundle.build(parts, stamper)


def test_a_bundle_verifies_offline_with_only_the_ca(data: bytes, pki: Pki, parts: bundle.BundleParts) -> None:
    report = bundle.verify(data, [pki.county.certificate])
    assert report.ok and report.status == "VALID", report.problems
    assert [r["event"] for r in report.timeline] == ["accepted", "delivered", "signed_for"]
    assert report.timeline[-1]["person"] == "王科长" and report.timeline[-1]["zh"] == "已签收"
    assert report.envelope_sha256 == hashlib.sha256(parts.envelope).hexdigest()
    files = bundle.read_files(data)
    assert {"envelope.p7m", "inner.p7m", "MANIFEST.json", "archive/0001.tsr", "timeline.txt"} <= set(files)
    assert sum(n.endswith(".tsr") and n.startswith("evidence/") for n in files) == 3
    text = files["timeline.txt"].decode()
    assert text.index("已签收") < text.index("accepted (signed for)")  # zh-CN first, then English


def test_any_changed_byte_fails(data: bytes, pki: Pki) -> None:
    step = max(1, len(data) // 150)
    for position in range(0, len(data), step):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        report = bundle.verify(bytes(damaged), [pki.county.certificate])
        assert not report.ok, f"a change at byte {position} of {len(data)} went unnoticed"


def test_a_stranger_ca_or_an_evidence_for_another_envelope_fails(data: bytes, pki: Pki, b: UnitCredentials,
                                                                  stamper: Stamper, parts: bundle.BundleParts) -> None:
    assert not bundle.verify(data, [pki.stranger.certificate]).ok
    _, other = make_receipt(message_id=parts.message_id, recipient=b.address, event="opened",
                            envelope_sha256="ab" * 32, cert=b.sign_cert, key=b.sign_key)
    mixed = bundle.BundleParts(**{**parts.__dict__, "evidences": [*parts.evidences, add_signature_timestamp(other, stamper)]})
    report = bundle.verify(bundle.build(mixed, stamper), [pki.county.certificate])
    assert not report.ok and any("another envelope" in p["message"] for p in report.problems)


def test_an_evidence_without_a_timestamp_fails(parts: bundle.BundleParts, pki: Pki, stamper: Stamper,
                                               b: UnitCredentials) -> None:
    _, bare = make_receipt(message_id=parts.message_id, recipient=b.address, event="opened",
                           envelope_sha256=hashlib.sha256(parts.envelope).hexdigest(), cert=b.sign_cert, key=b.sign_key)
    with pytest.raises(Exception) as exc:
        read_evidence(bare, pki.trust())
    assert getattr(exc.value, "code", "") == "timestamp_missing"


def test_ten_years_on_it_needs_renewal_and_a_renewed_bundle_verifies(data: bytes, pki: Pki, tmp_path: Path) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3652)
    report = bundle.verify(data, [pki.county.certificate], at=later)
    assert not report.ok and report.status == "INDETERMINATE"
    assert report.problems[0]["code"] == "renewal_needed"
    # The renewal's TSA: issued under the long-term archive CA that succeeds the county's.
    archive_ca = CertificateAuthority.init(tmp_path / "archive-ca", "长期保存证书中心", None, validity_days=365 * 30)
    archive_ca.issue_tsa("长期保存时间戳服务", tmp_path / "tsa", None, validity_days=365 * 25)
    renewed = bundle.renew(data, local_stamper(TimeStampAuthority.load(tmp_path / "tsa", None)))
    assert "archive/0002.tsr" in bundle.read_files(renewed)
    again = bundle.verify(renewed, [pki.county.certificate, archive_ca.certificate], at=later)
    assert again.ok and again.status == "VALID", again.problems
    assert len(again.archive["timestamps"]) == 2
    assert bundle.verify(renewed, [pki.county.certificate, archive_ca.certificate]).ok  # and today
