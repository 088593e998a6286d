"""Certificate requests (PKCS#10) from a unit's own terminal: the terminal makes its keys
and asks; the information centre checks the fingerprint it was read out and issues. A
request is hostile input until proven: its size, its self-signature and its key are
checked, and nothing of its subject is used (the CA alone names the holder)."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from docex.pki.errors import PkiError
from docex.pki.keys import PrivateKey

MAX_CSR_BYTES = 8 * 1024
MIN_KEY_BITS = 2048
MAX_KEY_BITS = 8192


def make_request(key: PrivateKey, address: str) -> bytes:
    """A PEM PKCS#10 request for `key`; the subject is informational only."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address[:64])]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def request_key(pem: bytes | str) -> rsa.RSAPublicKey:
    """The public key of a well-formed, self-signed request with an acceptable RSA key."""
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CSR_BYTES:
        raise PkiError("bad_request", f"a certificate request is at most {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(data)
        key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise PkiError("bad_request", "the certificate request cannot be read") from exc
    if not valid:
        raise PkiError("bad_request", "the certificate request's signature does not verify")
    if not isinstance(key, rsa.RSAPublicKey):
        raise PkiError("weak_key", "unit keys must be RSA")
    if not MIN_KEY_BITS <= key.key_size <= MAX_KEY_BITS:
        raise PkiError("weak_key", f"unit keys must be RSA of {MIN_KEY_BITS} to {MAX_KEY_BITS} bits, not {key.key_size}")
    if key.public_numbers().e != 65537:
        raise PkiError("weak_key", "unit keys must use the public exponent 65537")
    return key


def key_fingerprint(*keys: rsa.RSAPublicKey) -> str:
    """What the terminal shows and the information centre compares, read out by phone:
    SHA-256 over the keys' SubjectPublicKeyInfo, the first 128 bits in groups of four."""
    h = hashlib.sha256()
    for key in keys:
        h.update(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    digest = h.hexdigest()[:32].upper()
    return "-".join(digest[i : i + 4] for i in range(0, 32, 4))


def same_fingerprint(given: str, expected: str) -> bool:
    def norm(value: str) -> str:
        return "".join(c for c in value.upper() if c in "0123456789ABCDEF")

    return bool(norm(given)) and norm(given) == norm(expected)
