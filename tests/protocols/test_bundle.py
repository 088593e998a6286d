"""Evidence bundles without a network: built from real statements (a real envelope, the
hub's accepted notice, the recipient's delivered and signed-for receipts, each
timestamped), they verify offline with only the CA; any changed byte fails; the delivered
receipt survives the signed-for one; ten years on the bundle asks for renewal, and a
bundle renewed (with the CRLs of that day) before the first TSA certificate expired
verifies again, by OpenSSL too."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.timestamps import Stamper, add_signature_timestamp, local_stamper
from docex.pki.tsa import TimeStampAuthority
from docex.protocols import bundle, envelope
from docex.protocols.errors import DocexError
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


# -- long-term: renewal with validation data, on a controlled clock ----------------------------------
NOW = dt.datetime.now(dt.UTC)
RENEWED_AT = NOW + dt.timedelta(days=365 * 5 - 90)  # the first TSA certificate (5 years) is about to expire
LATER = NOW + dt.timedelta(days=3652)  # it has long expired


@dataclass
class Archive:
    ca: CertificateAuthority
    stamper: Stamper  # the renewal's TSA, under a longer-lived CA, its clock at RENEWED_AT


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    root = tmp_path_factory.mktemp("archive")
    ca = CertificateAuthority.init(root / "ca", "长期保存证书中心", None, validity_days=365 * 30)
    ca.issue_tsa("长期保存时间戳服务", root / "tsa", None, validity_days=365 * 25)
    return Archive(ca, local_stamper(TimeStampAuthority.load(root / "tsa", None, clock=lambda: RENEWED_AT)))


@pytest.fixture(scope="module")
def renewed(data: bytes, pki: Pki, archive: Archive) -> bundle.Renewal:
    """Renewed when the first archive timestamp is about to expire, with the county CA's CRL
    of that day."""
    return bundle.renew(data, archive.stamper, anchors=[pki.county.certificate, archive.ca.certificate],
                        crls=[pki.county.crl(now=RENEWED_AT)], now=RENEWED_AT)


def test_ten_years_on_it_needs_renewal_and_a_renewed_bundle_verifies(data: bytes, pki: Pki, archive: Archive,
                                                                       renewed: bundle.Renewal) -> None:
    report = bundle.verify(data, [pki.county.certificate], at=LATER)
    assert not report.ok and report.status == "INDETERMINATE"
    assert report.problems[0]["code"] == "renewal_needed"
    due = bundle.verify(data, [pki.county.certificate], at=RENEWED_AT)
    assert due.ok and due.status == "RENEWAL_DUE"
    files = bundle.read_files(renewed.data)
    assert renewed.number == 2 and renewed.refreshed == ["阳山县信息中心 CA"] and renewed.not_refreshed == []
    crls = [n for n in files if n.startswith("archive/0002/crls/")]
    assert len(crls) == 1 and "archive/0002/index.sha256" in files and "archive/0002.tsr" in files
    assert files["archive/0002/index.sha256"].decode().endswith(f"  {sorted(n for n in files if n.startswith('archive/0002/') and n.endswith('.pem'))[-1]}\n")
    anchors = [pki.county.certificate, archive.ca.certificate]
    again = bundle.verify(renewed.data, anchors, at=LATER)
    assert again.ok and again.status == "VALID", again.problems
    assert len(again.archive["timestamps"]) == 2
    assert any(c.startswith("renewal 2 (") and "by the CRLs the renewal carries" in c for c in again.checks)
    assert bundle.verify(renewed.data, anchors).ok  # and today
    assert bundle.verify(renewed.data, anchors, at=RENEWED_AT + dt.timedelta(days=1)).status == "VALID"


def test_a_renewal_without_validation_data_extends_nothing(data: bytes, pki: Pki, archive: Archive) -> None:
    """An archive timestamp added over the bundle with no CRLs (as renewals did before):
    the first timestamp must stand alone, so ten years on the bundle is not VALID."""
    files = bundle.read_files(data)
    files["archive/0002.tsr"] = archive.stamper(hashlib.sha256(files["MANIFEST.json"] + files["archive/0001.tsr"]).digest())
    bare = bundle._zip(files)
    anchors = [pki.county.certificate, archive.ca.certificate]
    report = bundle.verify(bare, anchors, at=LATER)
    assert report.status == "INDETERMINATE" and "archive timestamp 1 no longer proves" in report.problems[0]["message"]
    assert any("without validation data: it extends nothing" in c for c in report.checks)
    assert bundle.verify(bare, anchors).status == "VALID"  # today the first one still stands


def test_renewal_needs_a_current_crl_of_the_tsa_chain(data: bytes, pki: Pki, archive: Archive) -> None:
    anchors = [pki.county.certificate, archive.ca.certificate]
    with pytest.raises(DocexError) as exc:
        bundle.renew(data, archive.stamper, anchors=anchors, crls=[], now=RENEWED_AT)
    assert exc.value.code == "crl_missing" and "阳山县信息中心 CA" in exc.value.message
    with pytest.raises(DocexError) as exc:  # today's CRL, five years on: long past its nextUpdate
        bundle.renew(data, archive.stamper, anchors=anchors, crls=[pki.county.crl()], now=RENEWED_AT)
    assert exc.value.code == "crl_stale"
    with pytest.raises(PkiError) as late:  # after the first TSA certificate expired: too late to renew
        bundle.renew(data, archive.stamper, anchors=anchors, crls=[pki.county.crl(now=LATER)], now=LATER)
    assert late.value.code == "certificate_expired"


def test_a_revoked_tsa_is_not_renewed(parts: bundle.BundleParts, pki: Pki, archive: Archive, tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", "另一时间戳证书中心", None)
    cert = ca.issue_tsa("另一时间戳服务", tmp_path / "tsa", None)
    data = bundle.build(parts, local_stamper(TimeStampAuthority.load(tmp_path / "tsa", None)))
    ca.revoke(cert.serial_number, "key_compromise")
    with pytest.raises(PkiError) as exc:
        bundle.renew(data, archive.stamper, anchors=[pki.county.certificate, ca.certificate, archive.ca.certificate],
                     crls=[ca.crl(now=RENEWED_AT)], now=RENEWED_AT)
    assert exc.value.code == "certificate_revoked"


def test_changed_or_dropped_validation_data_fails(renewed: bundle.Renewal, pki: Pki, archive: Archive) -> None:
    anchors = [pki.county.certificate, archive.ca.certificate]
    files = bundle.read_files(renewed.data)
    [name] = [n for n in files if n.startswith("archive/0002/crls/")]
    swapped = dict(files, **{name: pki.county.crl(now=RENEWED_AT + dt.timedelta(hours=1)).public_bytes(Encoding.PEM)})
    report = bundle.verify(bundle._zip(swapped), anchors, at=LATER)
    assert not report.ok and any("does not match its index" in p["message"] for p in report.problems)
    dropped = {n: b for n, b in files.items() if not n.startswith("archive/0002/")}
    report = bundle.verify(bundle._zip(dropped), anchors, at=LATER)
    assert report.status == "INVALID" and any("archive timestamp 2" in p["message"] for p in report.problems)


def test_openssl_alone_checks_the_renewal(renewed: bundle.Renewal, pki: Pki, archive: Archive, tmp_path: Path) -> None:
    """The README's OpenSSL-only steps: the index lists the renewal's files; the renewal's
    token covers the manifest, the first token and the index; the first token was valid
    when the renewal was made, by the CRL the renewal carries."""
    for name, blob in bundle.read_files(renewed.data).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(blob)
    (tmp_path / "cas.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM)
                                                for c in (pki.county.certificate, archive.ca.certificate)))

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    result = sh("sha256sum -c archive/0002/index.sha256")
    assert result.returncode == 0, result.stdout + result.stderr
    result = sh("cat MANIFEST.json archive/0001.tsr archive/0002/index.sha256 > covered-0002 && "
                "openssl ts -verify -token_in -in archive/0002.tsr -data covered-0002 -CAfile cas.pem")
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr
    made = sh("openssl ts -reply -token_in -in archive/0002.tsr -text | sed -n 's/^Time stamp: //p'").stdout.strip()
    assert sh(f'date -d "{made}" +%s').stdout.strip() == str(int(RENEWED_AT.timestamp())), made
    result = sh("cat cas.pem archive/0002/crls/*.pem > cas-crls.pem && openssl ts -verify -token_in "
                "-in archive/0001.tsr -data MANIFEST.json -CAfile cas-crls.pem -crl_check -attime "
                "$(date -d \"$(openssl ts -reply -token_in -in archive/0002.tsr -text | sed -n 's/^Time stamp: //p')\" +%s)")
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr
    result = sh(f"openssl ts -verify -token_in -in archive/0001.tsr -data MANIFEST.json -CAfile cas.pem "
                f"-attime {int(LATER.timestamp())}")  # alone, ten years on: its certificate has expired
    assert result.returncode != 0
