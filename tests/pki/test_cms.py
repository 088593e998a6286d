"""CMS sign/verify and AES-256-GCM enveloping, and their interoperability with OpenSSL."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from docex.pki import cms
from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.names import CertRole
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
TEXT = "关于做好电子公文交换工作的通知".encode()


@pytest.fixture(scope="module")
def me(pki: Pki) -> UnitCredentials:
    return pki.creds(XXZX)


def _code(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(PkiError) as exc:
        fn(*args, **kw)  # type: ignore[operator]
    return exc.value.code


def test_sign_and_verify(me: UnitCredentials, pki: Pki) -> None:
    when = dt.datetime(2011, 8, 25, 9, 0, tzinfo=dt.UTC)
    der = cms.sign(TEXT, me.sign_cert, me.sign_key, attributes={"docex_statement_type": b"receipt"},
                   signing_time=when)
    got = cms.verify(der, pki.trust(), role=CertRole.SEAL)
    assert (got.content, got.content_type, got.signer) == (TEXT, "data", me.sign_cert)
    assert got.chain[-1] == pki.county.certificate
    assert got.signing_time == when
    assert got.attributes == {"docex_statement_type": b"receipt"}


def test_changed_content_or_signature(me: UnitCredentials, pki: Pki) -> None:
    der = cms.sign(TEXT, me.sign_cert, me.sign_key)
    assert _code(cms.verify, der.replace(TEXT, TEXT[:-1] + b"!"), pki.trust()) == "signature_invalid"
    assert _code(cms.verify, der[:-1] + bytes([der[-1] ^ 1]), pki.trust()) == "signature_invalid"


def test_unsigned_fields_are_pinned(me: UnitCredentials, pki: Pki) -> None:
    """Version numbers and the digest list sit outside the signature: changing them is refused."""
    der = cms.sign(TEXT, me.sign_cert, me.sign_key)
    version_at = der.find(b"\x02\x01\x01\x31")  # SignedData version v1, then digestAlgorithms
    assert version_at > 0
    for pos in (version_at + 2, version_at + 10):
        changed = bytearray(der)
        changed[pos] ^= 0x02
        assert _code(cms.verify, bytes(changed), pki.trust()) == "malformed_envelope"


def test_not_signed_data(me: UnitCredentials, pki: Pki) -> None:
    enveloped = cms.encrypt(TEXT, [me.enc_cert])
    assert _code(cms.verify, enveloped, pki.trust()) == "malformed_envelope"
    assert _code(cms.verify, b"", pki.trust()) == "malformed_envelope"
    assert _code(cms.decrypt, cms.sign(TEXT, me.sign_cert, me.sign_key), me.enc_cert, me.enc_key) == "malformed_envelope"


def test_encrypt_for_several_recipients(pki: Pki) -> None:
    b, c, outsider = pki.creds(ZFB), pki.creds(FGJ), pki.creds(XXZX)
    der = cms.encrypt(TEXT, [b.enc_cert, c.enc_cert], content_type="data")
    assert cms.decrypt(der, b.enc_cert, b.enc_key) == TEXT
    assert cms.decrypt(der, c.enc_cert, c.enc_key) == TEXT
    assert {s for _, s in cms.recipient_serials(der)} == {b.enc_cert.serial_number, c.enc_cert.serial_number}
    assert _code(cms.decrypt, der, outsider.enc_cert, outsider.enc_key) == "not_a_recipient"
    assert _code(cms.decrypt, der, b.sign_cert, b.sign_key) == "not_a_recipient"
    assert _code(cms.encrypt, TEXT, []) == "no_recipients"


def test_changed_ciphertext_fails_the_tag(pki: Pki) -> None:
    b = pki.creds(ZFB)
    der = cms.encrypt(TEXT * 20, [b.enc_cert])
    changed = bytearray(der)
    changed[-40] ^= 0x01  # inside the ciphertext, before the 16-byte tag
    assert _code(cms.decrypt, bytes(changed), b.enc_cert, b.enc_key) == "decryption_failed"


def _openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "cms", *args], input=data, capture_output=True)


def test_openssl_opens_ours(me: UnitCredentials, pki: Pki, tmp_path: Path) -> None:
    b_dir = pki.unit_dir(ZFB)
    ca = str(pki.county.directory / "ca.crt")
    signed = _openssl("-verify", "-binary", "-inform", "DER", "-CAfile", ca,
                      data=cms.sign(TEXT, me.sign_cert, me.sign_key))
    assert signed.returncode == 0 and signed.stdout == TEXT
    opened = _openssl("-decrypt", "-binary", "-inform", "DER", "-recip", str(b_dir / "enc.crt"),
                      "-inkey", str(b_dir / "enc.key"), data=cms.encrypt(TEXT, [pki.creds(ZFB).enc_cert]))
    assert opened.returncode == 0 and opened.stdout == TEXT


def test_we_open_openssls(me: UnitCredentials, pki: Pki, tmp_path: Path) -> None:
    a_dir, b_dir = pki.unit_dir(XXZX), pki.unit_dir(ZFB)
    signed = _openssl("-sign", "-binary", "-nodetach", "-md", "sha256", "-outform", "DER",
                      "-signer", str(a_dir / "sign.crt"), "-inkey", str(a_dir / "sign.key"), data=TEXT)
    assert signed.returncode == 0, signed.stderr
    assert cms.verify(signed.stdout, pki.trust()).content == TEXT
    detached = _openssl("-sign", "-binary", "-md", "sha256", "-outform", "DER",
                        "-signer", str(a_dir / "sign.crt"), "-inkey", str(a_dir / "sign.key"), data=TEXT)
    assert _code(cms.verify, detached.stdout, pki.trust()) == "malformed_envelope"
    enveloped = _openssl("-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER", "-recip", str(b_dir / "enc.crt"),
                         "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256",
                         "-keyopt", "rsa_mgf1_md:sha256", data=TEXT)
    assert enveloped.returncode == 0, enveloped.stderr
    b = pki.creds(ZFB)
    assert cms.decrypt(enveloped.stdout, b.enc_cert, b.enc_key) == TEXT


# -- RFC 5035 / RFC 6211 attributes and RSA-PSS -------------------------------------------------

SHA256_RSA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"


def test_signatures_carry_signing_certificate_and_algorithm_protection(me: UnitCredentials) -> None:
    from asn1crypto import cms as asn1_cms

    der = cms.sign(TEXT, me.sign_cert, me.sign_key)
    attrs = {a["type"].native for a in asn1_cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"]}
    assert {"signing_certificate_v2", "cms_algorithm_protection"} <= attrs


def test_an_unsigned_algorithm_swap_is_refused(me: UnitCredentials, pki: Pki) -> None:
    """The SignerInfo's signatureAlgorithm is outside the signature: swapping sha256WithRSA for
    rsaEncryption (both verify the same bytes) is caught by CMSAlgorithmProtection."""
    der = cms.sign(TEXT, me.sign_cert, me.sign_key)
    at = der.rfind(SHA256_RSA_OID)
    swapped = der[: at + 10] + b"\x01" + der[at + 11 :]
    assert _code(cms.verify, swapped, pki.trust()) == "signature_invalid"


def test_signing_certificate_must_name_the_signer(me: UnitCredentials, pki: Pki) -> None:
    from asn1crypto import cms as asn1_cms

    other = pki.creds(ZFB)
    der = cms.sign(TEXT, other.sign_cert, other.sign_key)
    attr = next(a for a in asn1_cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"]
                if a["type"].native == "signing_certificate_v2")
    with pytest.raises(PkiError):
        cms._check_signing_certificate(attr, cms._asn1_cert(me.sign_cert))
    cms._check_signing_certificate(attr, cms._asn1_cert(other.sign_cert))


def test_rsa_pss_signatures_are_accepted(pki: Pki) -> None:
    a_dir = pki.unit_dir(XXZX)
    signed = _openssl("-sign", "-binary", "-nodetach", "-md", "sha256", "-outform", "DER",
                      "-signer", str(a_dir / "sign.crt"), "-inkey", str(a_dir / "sign.key"),
                      "-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:32", data=TEXT)
    assert signed.returncode == 0, signed.stderr
    assert b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a" in signed.stdout  # id-RSASSA-PSS
    got = cms.verify(signed.stdout, pki.trust())
    assert got.content == TEXT
    tampered = signed.stdout.replace(TEXT, TEXT[:-1] + b"!")
    assert _code(cms.verify, tampered, pki.trust()) == "signature_invalid"
