"""Certificate requests from terminals: only well-formed, self-signed requests with a
strong RSA key pass; the fingerprint both sides compare is stable and separator-blind."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from docex.pki.errors import PkiError
from docex.pki.keys import generate_rsa_key
from docex.pki.requests import (
    MAX_CSR_BYTES,
    key_fingerprint,
    make_request,
    request_key,
    same_fingerprint,
)
from tests.conftest import Pki


def _csr(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def test_a_good_request_gives_its_key() -> None:
    key = generate_rsa_key(2048)
    assert request_key(make_request(key, "qingyuan.yangshan.xxzx")) == key.public_key()


@pytest.mark.parametrize("bad", [b"", b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"])
def test_garbage_is_a_bad_request(bad: bytes) -> None:
    with pytest.raises(PkiError) as err:
        request_key(bad)
    assert err.value.code == "bad_request"


def test_oversized_request_is_refused_before_parsing() -> None:
    with pytest.raises(PkiError) as err:
        request_key(b"A" * (MAX_CSR_BYTES + 1))
    assert err.value.code == "bad_request"


def test_tampered_request_signature_fails() -> None:
    pem = make_request(generate_rsa_key(2048), "qingyuan.yangshan.xxzx")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PkiError) as err:
        request_key(tampered)
    assert err.value.code == "bad_request"


def test_weak_and_non_rsa_keys_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(PkiError) as err:
        request_key(_csr(weak))
    assert err.value.code == "weak_key"
    with pytest.raises(PkiError) as err:
        request_key(_csr(ec.generate_private_key(ec.SECP256R1())))
    assert err.value.code == "weak_key"


def test_fingerprint_is_stable_and_compared_without_separators() -> None:
    a, b = generate_rsa_key(2048).public_key(), generate_rsa_key(2048).public_key()
    fp = key_fingerprint(a, b)
    assert fp == key_fingerprint(a, b) != key_fingerprint(b, a)
    assert len(fp.replace("-", "")) == 32
    assert same_fingerprint(fp.lower().replace("-", " "), fp)
    assert not same_fingerprint("", fp) and not same_fingerprint(fp[:-1], fp)


def test_the_ca_names_the_holder_whatever_the_request_said(pki: Pki) -> None:
    sign, enc = generate_rsa_key(2048), generate_rsa_key(2048)
    sign_cert, enc_cert = pki.county.certify_unit("qingyuan.yangshan.newunit", "新单位", sign.public_key(), enc.public_key())
    assert sign_cert.public_key() == sign.public_key() and enc_cert.public_key() == enc.public_key()
    from docex.pki.names import CertRole, address_of, role_of

    assert (address_of(sign_cert), role_of(sign_cert), role_of(enc_cert)) == (
        "qingyuan.yangshan.newunit", CertRole.SEAL, CertRole.ENCRYPTION)
    pki.trust().verify(sign_cert, role=CertRole.SEAL)
    with pytest.raises(PkiError) as err:
        pki.county.certify_unit("qingyuan.yangshan.newunit", "x", rsa.generate_private_key(65537, 1024).public_key(),
                                enc.public_key())
    assert err.value.code == "weak_key"
