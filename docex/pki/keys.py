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


def save_private_key(path: str | os.PathLike[str], key: PrivateKeyTypes, passphrase: bytes | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
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
