"""The envelope against the CMS standards, read by two independent parsers: asn1crypto
(structure checks) and OpenSSL (`-cmsout -print`, `-verify`, `-decrypt`).

RFC 5083 §2.1: authAttrs present (the content type is not id-data) and covered by the GCM
tag; RFC 5652 §5.2: the outer eContent is the AuthEnvelopedData itself; RFC 5035 / RFC 6211:
signingCertificateV2 and CMSAlgorithmProtection on every signature; envelopes of the older
shape still open."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from cryptography.hazmat.primitives import serialization

from docex.pki import cms
from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.protocols import envelope as env
from docex.protocols.manifest import new_message_id
from docex.protocols.receipt import envelope_digest, make_receipt
from tests.conftest import Pki
from tests.protocols import forge
from tests.protocols.conftest import A, B

FRAME = Path(__file__).resolve().parents[2] / "scripts" / "cms-frame.sh"
FILES = {"正文.pdf": b"%PDF-1.7\n" + b"x" * 3000}


@pytest.fixture(scope="module")
def envelope(a: UnitCredentials, b: UnitCredentials) -> bytes:
    m = forge.manifest(A, [B], FILES)
    return env.pack(m, FILES, a, [b.enc_cert], main_document="正文.pdf")


def _signed_attrs(der: bytes) -> dict[str, asn1_cms.CMSAttribute]:
    info = asn1_cms.ContentInfo.load(der)
    signer_info = info["content"]["signer_infos"][0]
    return {a["type"].native: a for a in signer_info["signed_attrs"]}


def _check_signature_attributes(der: bytes, signer: UnitCredentials) -> None:
    attrs = _signed_attrs(der)
    ess = attrs["signing_certificate_v2"]["values"][0]["certs"][0]
    cert_der = signer.sign_cert.public_bytes(serialization.Encoding.DER)
    assert ess["cert_hash"].native == hashlib.sha256(cert_der).digest()
    assert ess["issuer_serial"]["serial_number"].native == signer.sign_cert.serial_number
    protection = attrs["cms_algorithm_protection"]["values"][0]
    assert protection["digest_algorithm"]["algorithm"].native == "sha256"
    assert protection["signature_algorithm"]["algorithm"].native == "sha256_rsa"


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "cms", *args], capture_output=True)


def test_layers_as_asn1crypto_reads_them(envelope: bytes, a: UnitCredentials, b: UnitCredentials) -> None:
    # outer: eContentType authEnvelopedData, eContent the bare AuthEnvelopedData (RFC 5652 §5.2)
    outer = asn1_cms.ContentInfo.load(envelope)
    encap = outer["content"]["encap_content_info"]
    assert encap["content_type"].native == "authenticated_enveloped_data"
    bare = encap["content"].parsed
    assert isinstance(bare, asn1_cms.AuthEnvelopedData)
    assert bare["version"].native == "v0"
    _check_signature_attributes(envelope, a)
    # encrypted layer: authAttrs carry the content type (RFC 5083 §2.1)
    eci = bare["auth_encrypted_content_info"]
    assert eci["content_type"].native == "signed_data"
    auth = {x["type"].native: x["values"][0].native for x in bare["auth_attrs"]}
    assert auth == {"content_type": "signed_data"}
    # inner: the same signature attributes
    inner = cms.decrypt(cms.as_content_info("authenticated_enveloped_data", bare.dump()), b.enc_cert, b.enc_key)
    _check_signature_attributes(inner, a)


def test_openssl_prints_and_opens_every_layer(envelope: bytes, pki: Pki, tmp_path: Path) -> None:
    ca, unit = str(pki.county.directory / "ca.crt"), pki.unit_dir(B)
    (tmp_path / "env").write_bytes(envelope)
    printed = _openssl("-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / "env"))
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout.decode()
    assert "id-smime-ct-authEnvelopedData" in text and "id-smime-aa-signingCertificateV2" in text
    assert "1.2.840.113549.1.9.52" in text or "CMSAlgorithmProtection" in text
    verified = _openssl("-verify", "-binary", "-inform", "DER", "-CAfile", ca, "-in", str(tmp_path / "env"),
                        "-out", str(tmp_path / "L2.bare"))
    assert verified.returncode == 0, verified.stderr
    framed = subprocess.run([str(FRAME), str(tmp_path / "L2.bare")], capture_output=True, check=True).stdout
    (tmp_path / "L2").write_bytes(framed)
    printed = _openssl("-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / "L2"))
    assert printed.returncode == 0, printed.stderr
    assert "authAttrs" in printed.stdout.decode() and "contentType" in printed.stdout.decode()
    opened = _openssl("-decrypt", "-binary", "-inform", "DER", "-in", str(tmp_path / "L2"),
                      "-recip", str(unit / "enc.crt"), "-inkey", str(unit / "enc.key"), "-out", str(tmp_path / "L3"))
    assert opened.returncode == 0, opened.stderr
    printed = _openssl("-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / "L3"))
    assert printed.returncode == 0 and "id-smime-aa-signingCertificateV2" in printed.stdout.decode()
    inner = _openssl("-verify", "-binary", "-inform", "DER", "-CAfile", ca, "-in", str(tmp_path / "L3"),
                     "-out", str(tmp_path / "package.zip"))
    assert inner.returncode == 0, inner.stderr


def test_auth_attrs_are_covered_by_the_tag(envelope: bytes, pki: Pki, b: UnitCredentials, tmp_path: Path) -> None:
    """Claiming another content type in authAttrs (a consistent one, so that only the tag
    can tell) fails the GCM tag for docex and for OpenSSL."""
    framed = env.verify_outer(envelope, pki.trust()).encrypted
    attrs_at = framed.find(b"\xa1\x1a\x30\x18\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x03")  # [1] { contentType
    assert attrs_at > 0
    oid_at = framed.find(b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02", attrs_at)  # id-signedData
    eci_oid_at = framed.find(b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02")
    changed = bytearray(framed)
    changed[oid_at + 10] = changed[eci_oid_at + 10] = 0x01  # both say id-data now
    with pytest.raises(PkiError) as exc:
        cms.decrypt(bytes(changed), b.enc_cert, b.enc_key)
    assert exc.value.code == "decryption_failed"
    (tmp_path / "L2").write_bytes(bytes(changed))
    unit = pki.unit_dir(B)
    opened = _openssl("-decrypt", "-binary", "-inform", "DER", "-in", str(tmp_path / "L2"),
                      "-recip", str(unit / "enc.crt"), "-inkey", str(unit / "enc.key"))
    assert opened.returncode != 0


def test_envelopes_of_the_older_shape_still_open(a: UnitCredentials, b: UnitCredentials, pki: Pki) -> None:
    m = forge.manifest(A, [B], FILES)
    package = forge.package(m, FILES)
    old = forge.wrap(package, m, a, [b.enc_cert], old_shape=True)
    outer = asn1_cms.ContentInfo.load(old)["content"]["encap_content_info"]["content"]
    assert outer.contents[:1] == b"\x30" and b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01\x17" in outer.contents[:20]
    assert env.open_envelope(old, b, pki.trust()).files == FILES


def test_openssl_verifies_receipts(b: UnitCredentials, pki: Pki, tmp_path: Path) -> None:
    _, der = make_receipt(message_id=new_message_id(), recipient=B, event="delivered",
                          envelope_sha256=envelope_digest(b"x"), cert=b.sign_cert, key=b.sign_key)
    _check_signature_attributes(der, b)
    (tmp_path / "r").write_bytes(der)
    ca = str(pki.county.directory / "ca.crt")
    assert _openssl("-verify", "-binary", "-inform", "DER", "-CAfile", ca, "-in", str(tmp_path / "r")).returncode == 0
    assert _openssl("-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / "r")).returncode == 0
