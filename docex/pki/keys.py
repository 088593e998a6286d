"""Key and certificate files. Private keys are PKCS#8 PEM, encrypted at rest with a
passphrase that comes from a file or an environment variable, never from a command line."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from docex.pki.errors import PkiError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
DEFAULT_PASSPHRASE_ENV = "DOCEX_PASSPHRASE"
KDF_ROUNDS = 600_000  # PBKDF2-HMAC-SHA256 iterations for keys at rest (OWASP 2023)


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits < 2048:
        raise PkiError("weak_key", f"RSA keys must be at least 2048 bits, not {bits}")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def resolve_passphrase(
    *,
    passphrase_file: str | os.PathLike[str] | None = None,
    passphrase_env: str | None = None,
    insecure_no_passphrase: bool = False,
) -> bytes | None:
    """The key passphrase: from a file, or from an environment variable (default
    DOCEX_PASSPHRASE). None only when the caller explicitly asked for no encryption."""
    if insecure_no_passphrase:
        return None
    if passphrase_file is not None:
        data = Path(passphrase_file).read_bytes().rstrip(b"\r\n")
        if not data:
            raise PkiError("no_passphrase", f"passphrase file {passphrase_file} is empty")
        return data
    env_name = passphrase_env or DEFAULT_PASSPHRASE_ENV
    value = os.environ.get(env_name)
    if value:
        return value.encode()
    raise PkiError(
        "no_passphrase",
        f"no key passphrase: set ${env_name} or give --passphrase-file "
        "(--insecure-no-passphrase only for tests and demos)",
    )


def _encrypted_pkcs8(key: PrivateKeyTypes, passphrase: bytes) -> bytes:
    """PKCS#8 EncryptedPrivateKeyInfo, PBES2: PBKDF2-HMAC-SHA256 with KDF_ROUNDS iterations
    and AES-256-CBC. (The library's BestAvailableEncryption uses 2,048 iterations, far too
    few today, and offers no way to ask for more in PKCS#8.) OpenSSL and cryptography read it."""
    from asn1crypto import algos as asn1_algos
    from asn1crypto import keys as asn1_keys
    from asn1crypto import pem as asn1_pem
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    salt, iv = os.urandom(16), os.urandom(16)
    secret = PBKDF2HMAC(hashes.SHA256(), 32, salt, KDF_ROUNDS).derive(passphrase)
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(padded) + encryptor.finalize()
    info = asn1_keys.EncryptedPrivateKeyInfo({
        "encryption_algorithm": {
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {"salt": asn1_algos.Pbkdf2Salt(name="specified", value=salt), "iteration_count": KDF_ROUNDS, "prf": {"algorithm": "sha256"}},
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
            },
        },
        "encrypted_data": sealed,
    })
    return bytes(asn1_pem.armor("ENCRYPTED PRIVATE KEY", info.dump()))


def save_private_key(path: str | os.PathLike[str], key: PrivateKeyTypes, passphrase: bytes | None) -> None:
    if passphrase:
        pem = _encrypted_pkcs8(key, passphrase)
    else:
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None) -> PrivateKey:
    data = Path(path).read_bytes()
    encrypted = b"ENCRYPTED PRIVATE KEY" in data
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except (ValueError, TypeError) as exc:
        if encrypted and passphrase is None:
            raise PkiError("key_locked", f"{path} is encrypted: a passphrase is needed") from exc
        raise PkiError("key_unreadable", f"cannot open private key {path} (wrong passphrase?)") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PkiError("key_unreadable", f"{path}: unsupported key type")
    return key


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiError("certificate_unreadable", f"cannot read certificate {path}") from exc


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    data = Path(path).read_bytes()
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiError("certificate_unreadable", f"cannot read certificates in {path}") from exc


def save_certificate(path: str | os.PathLike[str], cert: x509.Certificate) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_crl(path: str | os.PathLike[str]) -> x509.CertificateRevocationList:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise PkiError("crl_unreadable", f"cannot read CRL {path}") from exc
