"""The county certificate authority (县信息中心 CA).

A CA lives in one directory: ``ca.crt`` (the root, RSA-3072), ``ca.key`` (encrypted PKCS#8),
``index.json`` (every certificate issued, its holder and status) and ``crl.pem`` (the
current CRL, re-published on every revocation)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from docex.pki.errors import PkiError
from docex.pki.keys import (
    PrivateKey,
    generate_rsa_key,
    load_certificate,
    load_private_key,
    save_certificate,
    save_private_key,
)
from docex.pki.names import (
    CertRole,
    hub_uri,
    is_valid_address,
    link_uri,
    person_uri,
    unit_subject,
    unit_uri,
)

CA_KEY_BITS = 3072
END_ENTITY_KEY_BITS = 2048
CRL_VALIDITY = dt.timedelta(days=7)
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning, RFC 9336

REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "certificate_hold": x509.ReasonFlags.certificate_hold,
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def normalise_reason(reason: str) -> str:
    """Accept `keyCompromise`, `key-compromise` or `key_compromise`."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in reason).replace("-", "_")
    snake = snake.strip("_")
    if snake not in REVOCATION_REASONS:
        raise PkiError(
            "bad_reason",
            f"unknown revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}",
        )
    return snake


@dataclass
class IssuedRecord:
    serial: str  # hex, lower case
    role: str
    address: str
    holder: str
    not_after: str
    path: str
    status: str = "valid"  # valid | revoked
    revoked_at: str | None = None
    reason: str | None = None

    def effective_status(self, now: dt.datetime | None = None) -> str:
        if self.status == "revoked":
            return "revoked"
        if dt.datetime.fromisoformat(self.not_after) < (now or _now()):
            return "expired"
        return "valid"


def _refuse_overwrite(*paths: Path) -> None:
    """Issuing into a folder that holds keys would destroy them: refuse."""
    for path in paths:
        if path.exists():
            raise PkiError("credentials_exist", f"{path} exists; issue into an empty folder")


def read_records(directory: str | os.PathLike[str]) -> list[IssuedRecord]:
    """The CA's index, readable without its key (for `docex pki list`)."""
    path = Path(directory) / "index.json"
    if not path.exists():
        return []
    return [IssuedRecord(**item) for item in json.loads(path.read_text("utf-8"))]


@dataclass(frozen=True)
class IssuedUnit:
    sign_cert: x509.Certificate
    enc_cert: x509.Certificate
    directory: Path


class CertificateAuthority:
    """Issues and revokes the county's certificates. Not thread-safe: one writer."""

    def __init__(self, directory: Path, certificate: x509.Certificate, key: PrivateKey) -> None:
        self.directory = directory
        self.certificate = certificate
        self._key = key

    # -- life cycle ----------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        directory: str | os.PathLike[str],
        name: str,
        passphrase: bytes | None,
        *,
        validity_days: int = 3650,
        country: str = "CN",
    ) -> CertificateAuthority:
        root = Path(directory)
        if (root / "ca.crt").exists():
            raise PkiError("ca_exists", f"{root} already holds a CA (ca.crt)")
        root.mkdir(parents=True, exist_ok=True)
        key = generate_rsa_key(CA_KEY_BITS)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA"),
                # Two CAs never share a name (two hubs named alike, a CA made again): CRLs and
                # issuers are looked up by the name's hash (OpenSSL, Erlang's ssl at the broker).
                x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8)),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        save_private_key(root / "ca.key", key, passphrase)
        save_certificate(root / "ca.crt", cert)
        ca = cls(root, cert, key)
        ca._write_index([])
        ca.publish_crl()
        return ca

    @classmethod
    def open(cls, directory: str | os.PathLike[str], passphrase: bytes | None) -> CertificateAuthority:
        root = Path(directory)
        if not (root / "ca.crt").exists():
            raise PkiError("no_ca", f"{root} holds no CA: run `docex pki init` first")
        return cls(root, load_certificate(root / "ca.crt"), load_private_key(root / "ca.key", passphrase))

    # -- index -----------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.directory / "index.json"

    def records(self) -> list[IssuedRecord]:
        return read_records(self.directory)

    def _write_index(self, records: Sequence[IssuedRecord]) -> None:
        tmp = self._index_path().with_suffix(".tmp")
        tmp.write_text(
            json.dumps([asdict(r) for r in records], ensure_ascii=False, indent=1), "utf-8"
        )
        os.replace(tmp, self._index_path())

    def _record(self, cert: x509.Certificate, role: CertRole, address: str, holder: str, path: Path) -> None:
        records = self.records()
        records.append(
            IssuedRecord(
                serial=format(cert.serial_number, "x"),
                role=role.value,
                address=address,
                holder=holder,
                not_after=cert.not_valid_after_utc.isoformat(),
                path=str(path),
            )
        )
        self._write_index(records)

    # -- issuing -----------------------------------------------------------------------------
    def _build(
        self,
        subject: x509.Name,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        role: CertRole,
        *,
        key_usage: dict[str, bool],
        san: Iterable[x509.GeneralName] = (),
        eku: Sequence[x509.ObjectIdentifier] = (),
        eku_critical: bool = False,
        validity_days: int = 730,
    ) -> x509.Certificate:
        now = _now()
        usage = {
            name: False
            for name in (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            )
        }
        usage.update(key_usage)
        not_after = min(now + dt.timedelta(days=validity_days), self.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(**usage), critical=True)
            .add_extension(
                x509.CertificatePolicies([x509.PolicyInformation(role.policy_oid, None)]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        san_list = list(san)
        if san_list:
            builder = builder.add_extension(x509.SubjectAlternativeName(san_list), critical=False)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=eku_critical)
        return builder.sign(self._key, hashes.SHA256())

    def issue_unit(
        self,
        address: str,
        name: str,
        out_dir: str | os.PathLike[str],
        passphrase: bytes | None,
        *,
        validity_days: int = 730,
    ) -> IssuedUnit:
        """A unit's seal/signing certificate (机构证书) and its separate encryption one."""
        if not is_valid_address(address):
            raise PkiError("bad_address", f"{address!r} is not a valid unit address")
        out = Path(out_dir)
        _refuse_overwrite(out / "sign.key", out / "enc.key")
        sign_key = generate_rsa_key(END_ENTITY_KEY_BITS)
        enc_key = generate_rsa_key(END_ENTITY_KEY_BITS)
        sign_cert, enc_cert = self.certify_unit(address, name, sign_key.public_key(), enc_key.public_key(),
                                                validity_days=validity_days, record_path=out)
        save_private_key(out / "sign.key", sign_key, passphrase)
        save_certificate(out / "sign.crt", sign_cert)
        save_private_key(out / "enc.key", enc_key, passphrase)
        save_certificate(out / "enc.crt", enc_cert)
        save_certificate(out / "ca.crt", self.certificate)
        # The current CRL goes with the keys: the unit's first seal is B-LT already (the
        # agent then keeps it fresh from the hub's directory snapshots).
        (out / "crl.pem").write_bytes(self.crl().public_bytes(serialization.Encoding.PEM))
        return IssuedUnit(sign_cert, enc_cert, out)

    def certify_unit(
        self,
        address: str,
        name: str,
        sign_public: rsa.RSAPublicKey,
        enc_public: rsa.RSAPublicKey,
        *,
        validity_days: int = 730,
        record_path: str | os.PathLike[str] = "",
    ) -> tuple[x509.Certificate, x509.Certificate]:
        """A unit's two certificates for public keys it made itself (an enrolled terminal's
        certificate requests): the CA alone sets the subject, the roles and the validity."""
        if not is_valid_address(address):
            raise PkiError("bad_address", f"{address!r} is not a valid unit address")
        for key in (sign_public, enc_public):
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size < END_ENTITY_KEY_BITS:
                raise PkiError("weak_key", f"unit keys must be RSA of at least {END_ENTITY_KEY_BITS} bits")
        subject = unit_subject(address, name)
        san = [x509.UniformResourceIdentifier(unit_uri(address))]
        sign_cert = self._build(
            subject,
            sign_public,
            CertRole.SEAL,
            key_usage={"digital_signature": True, "content_commitment": True},
            san=san,
            # documentSigning (RFC 9336) for seals on documents; emailProtection because
            # the same key signs the CMS envelopes and receipts (OpenSSL's smime_sign check).
            eku=[DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION],
            validity_days=validity_days,
        )
        enc_cert = self._build(
            subject,
            enc_public,
            CertRole.ENCRYPTION,
            key_usage={"key_encipherment": True},
            san=san,
            validity_days=validity_days,
        )
        where = Path(record_path) if record_path else Path("enrolled")
        self._record(sign_cert, CertRole.SEAL, address, name, where / "sign.crt")
        self._record(enc_cert, CertRole.ENCRYPTION, address, name, where / "enc.crt")
        return sign_cert, enc_cert

    def issue_person(
        self,
        address: str,
        name: str,
        out_dir: str | os.PathLike[str],
        passphrase: bytes | None,
        *,
        validity_days: int = 730,
    ) -> x509.Certificate:
        """A staff member's personal certificate (个人证书), tied to the unit's address."""
        if not is_valid_address(address):
            raise PkiError("bad_address", f"{address!r} is not a valid unit address")
        out = Path(out_dir)
        _refuse_overwrite(out / "person.key")
        key = generate_rsa_key(END_ENTITY_KEY_BITS)
        cert = self._build(
            unit_subject(address, name),
            key.public_key(),
            CertRole.PERSON,
            key_usage={"digital_signature": True, "content_commitment": True},
            san=[x509.UniformResourceIdentifier(person_uri(address))],
            validity_days=validity_days,
        )
        save_private_key(out / "person.key", key, passphrase)
        save_certificate(out / "person.crt", cert)
        save_certificate(out / "ca.crt", self.certificate)
        self._record(cert, CertRole.PERSON, address, name, out / "person.crt")
        return cert

    def issue_server(
        self,
        name: str,
        out_dir: str | os.PathLike[str],
        passphrase: bytes | None,
        *,
        hub_prefix: str | None = None,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = (),
        key_name: str = "server",
        validity_days: int = 730,
    ) -> x509.Certificate:
        """The hub's (or a bridge's) own certificate: TLS and signing of directory snapshots,
        rejection notices and routing decisions (``urn:docex:hub:<prefix>``)."""
        out = Path(out_dir)
        key = generate_rsa_key(END_ENTITY_KEY_BITS)
        san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        san.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses)
        if hub_prefix:
            san.append(x509.UniformResourceIdentifier(hub_uri(hub_prefix)))
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, hub_prefix or name),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        cert = self._build(
            subject,
            key.public_key(),
            CertRole.SERVER,
            key_usage={"digital_signature": True, "key_encipherment": True},
            san=san,
            eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION],
            validity_days=validity_days,
        )
        save_private_key(out / f"{key_name}.key", key, passphrase)
        save_certificate(out / f"{key_name}.crt", cert)
        save_certificate(out / "ca.crt", self.certificate)
        self._record(cert, CertRole.SERVER, hub_prefix or name, name, out / f"{key_name}.crt")
        return cert

    def issue_client(
        self,
        login: str,
        out_dir: str | os.PathLike[str],
        passphrase: bytes | None,
        *,
        address: str = "",
        link: str = "",
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None,
        validity_days: int = 730,
    ) -> x509.Certificate:
        """A TLS client certificate (EKU clientAuth only) for a broker login by SASL EXTERNAL.

        The subject CN is the broker user name (RabbitMQ `ssl_cert_login_from = common_name`):
        the unit's address, or the bridge's link user, prefixed as the hub names its users.
        The SAN URI says whom it speaks for (``urn:docex:unit:`` / ``urn:docex:link:``).
        With `public_key` (a terminal's request) only `client.crt` is written: the private
        key never leaves the terminal; otherwise a key is made and saved as `client.key`."""
        if address and not is_valid_address(address):
            raise PkiError("bad_address", f"{address!r} is not a valid unit address")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        key = None
        if public_key is None:
            _refuse_overwrite(out / "client.key")
            key = generate_rsa_key(END_ENTITY_KEY_BITS)
            public_key = key.public_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                *([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, address)] if address else []),
                x509.NameAttribute(NameOID.COMMON_NAME, login),
            ]
        )
        san: list[x509.GeneralName] = []
        if address:
            san.append(x509.UniformResourceIdentifier(unit_uri(address)))
        if link:
            san.append(x509.UniformResourceIdentifier(link_uri(link)))
        cert = self._build(
            subject,
            public_key,
            CertRole.CLIENT,
            key_usage={"digital_signature": True, "key_encipherment": isinstance(public_key, rsa.RSAPublicKey)},
            san=san,
            eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
            validity_days=validity_days,
        )
        if key is not None:
            save_private_key(out / "client.key", key, passphrase)
        save_certificate(out / "client.crt", cert)
        # holder: the broker login, which the hub closes when this certificate is revoked
        self._record(cert, CertRole.CLIENT, address or link, login, out / "client.crt")
        return cert

    def issue_tsa(
        self, name: str, out_dir: str | os.PathLike[str], passphrase: bytes | None, *, validity_days: int = 1825
    ) -> x509.Certificate:
        """The time-stamping authority's certificate (RFC 3161: EKU timeStamping, critical)."""
        out = Path(out_dir)
        _refuse_overwrite(out / "tsa.key")
        key = generate_rsa_key(END_ENTITY_KEY_BITS)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        cert = self._build(
            subject,
            key.public_key(),
            CertRole.TSA,
            key_usage={"digital_signature": True, "content_commitment": True},
            eku=[ExtendedKeyUsageOID.TIME_STAMPING],
            eku_critical=True,
            validity_days=validity_days,
        )
        save_private_key(out / "tsa.key", key, passphrase)
        save_certificate(out / "tsa.crt", cert)
        save_certificate(out / "ca.crt", self.certificate)
        self._record(cert, CertRole.TSA, "", name, out / "tsa.crt")
        return cert

    # -- revocation ------------------------------------------------------------------------
    def revoke(self, serial: str | int, reason: str = "unspecified") -> IssuedRecord:
        # accept what people copy from other tools: 0x prefix, colons, leading zeros
        serial_hex = (
            format(serial, "x")
            if isinstance(serial, int)
            else serial.strip().lower().removeprefix("0x").replace(":", "").lstrip("0") or "0"
        )
        reason_key = normalise_reason(reason)
        records = self.records()
        for record in records:
            if record.serial == serial_hex:
                if record.status == "revoked":
                    raise PkiError("already_revoked", f"certificate {serial_hex} is already revoked")
                record.status = "revoked"
                record.revoked_at = _now().isoformat()
                record.reason = reason_key
                self._write_index(records)
                self.publish_crl()
                return record
        raise PkiError("unknown_serial", f"this CA issued no certificate with serial {serial_hex}")

    def crl(self, *, now: dt.datetime | None = None) -> x509.CertificateRevocationList:
        """The current CRL (`now`: as of another time, for a controlled clock)."""
        now = now or _now()
        revoked = [r for r in self.records() if r.status == "revoked"]
        number = len(revoked) + int(now.timestamp())
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + CRL_VALIDITY)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for record in revoked:
            assert record.revoked_at is not None
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(record.serial, 16))
                .revocation_date(dt.datetime.fromisoformat(record.revoked_at))
                .add_extension(x509.CRLReason(REVOCATION_REASONS[record.reason or "unspecified"]), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        return builder.sign(self._key, hashes.SHA256())

    def publish_crl(self) -> Path:
        path = self.directory / "crl.pem"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.crl().public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, path)
        return path

    def signing_key(self) -> PrivateKey:
        return self._key
