"""Signature timestamps and archive timestamps outside PDFs: a token over a CMS signature
leaves the signed bytes alone, verifies offline at its own time, fails on any change, and
a chain of archive timestamps asks for renewal once its newest certificate has expired."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from docex.pki import cms, timestamps
from docex.pki.ca import CertificateAuthority
from docex.pki.errors import PkiError
from docex.pki.tsa import TimeStampAuthority, serve
from tests.conftest import Pki

UNIT = "qingyuan.yangshan.xxzx"


def _signed(pki: Pki) -> bytes:
    creds = pki.creds(UNIT)
    return cms.sign(b'{"event":"delivered"}', creds.sign_cert, creds.sign_key)


def test_a_signature_timestamp_keeps_the_signature_and_verifies(pki: Pki, seal_tsa: TimeStampAuthority) -> None:
    der = _signed(pki)
    stamped = timestamps.add_signature_timestamp(der, timestamps.local_stamper(seal_tsa))
    assert stamped != der and timestamps.signature_value(stamped) == timestamps.signature_value(der)
    assert cms.verify(stamped, pki.trust()).content == b'{"event":"delivered"}'
    info = timestamps.verify_signature_timestamp(stamped, pki.trust())
    assert info.tsa.subject == seal_tsa.cert.subject
    assert abs((info.gen_time - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    # idempotent: a second stamp does not add a second token
    assert timestamps.add_signature_timestamp(stamped, timestamps.local_stamper(seal_tsa)) == stamped


def test_a_token_over_other_data_or_a_changed_token_fails(pki: Pki, seal_tsa: TimeStampAuthority) -> None:
    token = timestamps.local_stamper(seal_tsa)(b"\x01" * 32)
    with pytest.raises(PkiError) as exc:
        timestamps.verify_token(token, pki.trust(), digest=b"\x02" * 32)
    assert exc.value.code == "timestamp_invalid"
    damaged = bytearray(token)
    damaged[len(damaged) // 2] ^= 0x01
    with pytest.raises(PkiError):
        timestamps.verify_token(bytes(damaged), pki.trust(), digest=b"\x01" * 32)
    with pytest.raises(PkiError) as exc:
        timestamps.verify_signature_timestamp(_signed(pki), pki.trust())
    assert exc.value.code == "timestamp_missing"


def test_openssl_verifies_a_signature_timestamp(pki: Pki, seal_tsa: TimeStampAuthority, tmp_path: Path) -> None:
    stamped = timestamps.add_signature_timestamp(_signed(pki), timestamps.local_stamper(seal_tsa))
    (tmp_path / "sig.bin").write_bytes(timestamps.signature_value(stamped))
    (tmp_path / "token.tsr").write_bytes(timestamps.signature_timestamp(stamped) or b"")
    (tmp_path / "ca.crt").write_bytes(pki.county.certificate.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in", str(tmp_path / "token.tsr"),
                             "-data", str(tmp_path / "sig.bin"), "-CAfile", str(tmp_path / "ca.crt")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr


def test_the_http_stamper_reaches_a_running_tsa(pki: Pki, seal_tsa: TimeStampAuthority) -> None:
    server = serve(seal_tsa, "127.0.0.1", 0)
    try:
        token = timestamps.http_stamper(server.url)(b"\x03" * 32)
    finally:
        server.shutdown()
        server.server_close()
    assert timestamps.verify_token(token, pki.trust(), digest=b"\x03" * 32).tsa.subject == seal_tsa.cert.subject
    with pytest.raises(PkiError) as exc:
        timestamps.http_stamper("http://127.0.0.1:9/", timeout=1)(b"\x03" * 32)
    assert exc.value.code == "timestamp_failed"


def test_archive_timestamps_need_renewal_once_expired_and_verify_again_when_renewed(
        pki: Pki, seal_tsa: TimeStampAuthority, tmp_path: Path) -> None:
    base = b"bundle manifest"
    first = timestamps.local_stamper(seal_tsa)(timestamps.hashlib.sha256(base).digest())
    now = dt.datetime.now(dt.UTC)
    assert timestamps.evaluate_archive(base, [first], pki.trust(), at=now).status == "VALID"
    later = now + dt.timedelta(days=3650)
    status = timestamps.evaluate_archive(base, [first], pki.trust(), at=later)
    assert status.status == "INDETERMINATE" and "renew" in status.message
    # A longer-lived CA (the archive's next anchor) issues the TSA of the renewal.
    archive_ca = CertificateAuthority.init(tmp_path / "archive-ca", "长期保存时间戳", None, validity_days=365 * 30)
    archive_ca.issue_tsa("长期保存时间戳服务", tmp_path / "tsa2", None, validity_days=365 * 25)
    renewal_tsa = TimeStampAuthority.load(tmp_path / "tsa2", None)
    second = timestamps.local_stamper(renewal_tsa)(
        timestamps.hashlib.sha256(timestamps.archive_input(base, [first])).digest())
    trust = pki.trust()
    trust.anchors.append(archive_ca.certificate)
    renewed = timestamps.evaluate_archive(base, [first, second], trust, at=later)
    assert renewed.status == "VALID", renewed.message
    assert timestamps.evaluate_archive(base + b"!", [first, second], trust, at=later).status == "INVALID"


def test_a_returned_receipt_is_stamped_with_everything_else_kept_as_received(seal_tsa: TimeStampAuthority) -> None:
    """A real returned receipt (from a test run of the dashboard e2e) that asn1crypto took
    minutes to re-encode whole once its SignerInfo changed, holding the hub's intake: only
    the SignerInfo is encoded anew, every other part is the received bytes."""
    der = (Path(__file__).parent / "data" / "returned-receipt.der").read_bytes()
    stamped = timestamps.add_signature_timestamp(der, timestamps.local_stamper(seal_tsa))
    assert timestamps.signature_value(stamped) == timestamps.signature_value(der)
    assert timestamps.signature_timestamp(stamped) is not None
    before, after = (cms._ContentInfo.load(d, strict=True)["content"] for d in (der, stamped))
    for name in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        assert after[name].dump() == before[name].dump(), name
    signer_before, signer_after = before["signer_infos"][0], after["signer_infos"][0]
    for name in ("sid", "digest_algorithm", "signed_attrs", "signature_algorithm", "signature"):
        assert signer_after[name].dump() == signer_before[name].dump(), name
