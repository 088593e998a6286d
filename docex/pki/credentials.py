"""A unit's credentials as `docex pki issue` writes them: sign.crt/sign.key (seal/signing,
机构证书), enc.crt/enc.key (encryption) and ca.crt."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from docex.pki.errors import PkiError
from docex.pki.keys import PrivateKey, load_certificate, load_private_key
from docex.pki.names import address_of, common_name


@dataclass(frozen=True)
class UnitCredentials:
    address: str
    name: str
    sign_cert: x509.Certificate
    sign_key: PrivateKey
    enc_cert: x509.Certificate
    enc_key: PrivateKey

    @classmethod
    def load(cls, directory: str | os.PathLike[str], passphrase: bytes | None) -> UnitCredentials:
        root = Path(directory)
        for name in ("sign.crt", "sign.key", "enc.crt", "enc.key"):
            if not (root / name).exists():
                raise PkiError("no_credentials", f"{root} lacks {name}: is it a unit folder from `docex pki issue`?")
        sign_cert = load_certificate(root / "sign.crt")
        address = address_of(sign_cert)
        if address is None:
            raise PkiError("wrong_certificate_role", f"{root / 'sign.crt'} names no unit address")
        return cls(
            address=address,
            name=common_name(sign_cert),
            sign_cert=sign_cert,
            sign_key=load_private_key(root / "sign.key", passphrase),
            enc_cert=load_certificate(root / "enc.crt"),
            enc_key=load_private_key(root / "enc.key", passphrase),
        )


@dataclass(frozen=True)
class PersonCredentials:
    address: str
    name: str
    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def load(cls, directory: str | os.PathLike[str], passphrase: bytes | None) -> PersonCredentials:
        root = Path(directory)
        cert = load_certificate(root / "person.crt")
        address = address_of(cert)
        if address is None:
            raise PkiError("wrong_certificate_role", f"{root / 'person.crt'} names no unit address")
        return cls(address, common_name(cert), cert, load_private_key(root / "person.key", passphrase))
