"""Registering units: certificates, a broker user that can only write to the ingress and
read its own inbox, the inbox queue, the directory row, the audit entry."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from docex.broker.topology import unit_permissions
from docex.hub import audit, broker, network, unit_csv
from docex.hub import directory as hub_directory
from docex.hub.config import HubConfig
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.hub.models import Unit
from docex.hub.unit_csv import CsvUnit, SkippedRow
from docex.pki.ca import CertificateAuthority
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificate
from docex.pki.names import CertRole, address_of, role_of
from docex.protocols.address import check_address, is_under
from docex.protocols.errors import DocexError

PHASES = ("pilot", "dual_track", "electronic")


@dataclass(frozen=True)
class Provisioning:
    """Everything a unit's terminal needs, handed to the agent side to write its home."""

    address: str
    name: str
    hub_prefix: str
    broker_url: str  # the unit's own login
    broker_user: str
    keys_dir: Path
    ca_pem: bytes
    anchors_pem: list[bytes]
    crl_pem: bytes
    directory_der: bytes
    tsa_url: str = ""  # the hub's time-stamping authority, for the unit's seals
    broker_ca_pem: bytes = b""  # the CA of the broker's TLS certificate (amqps:// logins)
    client_cert_pem: bytes = b""  # the TLS login's certificate (also written to keys_dir when made there)


def _pem(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def add_unit(
    config: HubConfig,
    db: Database,
    identity: HubIdentity,
    ca: CertificateAuthority | None,
    *,
    address: str,
    name: str,
    out_dir: str | Path,
    passphrase: bytes | None,
    kind: str = "",
    building: str = "",
    phase: str = "electronic",
    existing_keys: str | Path | None = None,
    actor: str = "information-centre",
) -> Provisioning:
    """Register one unit. With `existing_keys` the unit keeps certificates another trusted
    CA (the city's) issued it: they are checked, not re-issued."""
    check_address(address)
    if not is_under(address, config.prefix) or address == config.prefix:
        raise DocexError("bad_address", f"{address} is not under this hub's prefix {config.prefix}")
    if phase not in PHASES:
        raise DocexError("bad_metadata", f"phase must be one of {', '.join(PHASES)}")
    with db.session() as s:
        if s.get(Unit, address) is not None:
            raise DocexError("unit_exists", f"{address} is already registered")
    out = Path(out_dir)
    keys_dir = out
    if existing_keys is not None:
        src = Path(existing_keys)
        keys_dir.mkdir(parents=True, exist_ok=True)
        for fname in ("sign.crt", "sign.key", "enc.crt", "enc.key"):
            (keys_dir / fname).write_bytes((src / fname).read_bytes())
            (keys_dir / fname).chmod(0o600 if fname.endswith(".key") else 0o644)
        sign_cert = load_certificate(keys_dir / "sign.crt")
        enc_cert = load_certificate(keys_dir / "enc.crt")
        for cert, role in ((sign_cert, CertRole.SEAL), (enc_cert, CertRole.ENCRYPTION)):
            if address_of(cert) != address or role_of(cert) != role:
                raise DocexError("wrong_certificate_role", f"{src} does not hold {address}'s {role.value} certificate")
            identity.trust.verify(cert, role=role)
    else:
        if ca is None:
            raise DocexError("no_ca", "this hub has no CA key available to issue certificates")
        issued = ca.issue_unit(address, name, keys_dir, passphrase)
        sign_cert, enc_cert = issued.sign_cert, issued.enc_cert
    return register_unit(config, db, identity, ca, address=address, name=name, kind=kind, building=building,
                         phase=phase, sign_cert=sign_cert, enc_cert=enc_cert, keys_dir=keys_dir, passphrase=passphrase,
                         actor=actor, imported=existing_keys is not None)


@dataclass(frozen=True)
class BrokerLogin:
    user: str
    url: str
    client_cert: x509.Certificate | None = None  # the TLS login's certificate, when the broker has TLS


def _broker_login(config: HubConfig, ca: CertificateAuthority | None, address: str, keys_dir: Path,
                  passphrase: bytes | None, *, client_public: rsa.RSAPublicKey | None = None) -> BrokerLogin:
    """A (new) broker login for the unit, limited to writing the ingress and reading its
    own inbox: by certificate over TLS once the broker has it (`docex broker tls`), else a
    fresh password (a development broker). `client_public`: the key of a terminal's
    request; only the certificate is made (into keys_dir, if given)."""
    user = broker.broker_user(config, address)
    cert = None
    if config.broker.tls_port:
        # The unit logs in with a certificate whose CN is its broker user, from this hub's CA
        # (also for units holding city certificates: the broker is this hub's).
        if ca is None:
            raise DocexError("no_ca", "this hub has no CA key available to issue the unit's TLS certificate")
        if client_public is not None and keys_dir == Path():
            with tempfile.TemporaryDirectory() as scratch:
                cert = ca.issue_client(user, scratch, None, address=address, public_key=client_public)
        else:
            cert = ca.issue_client(user, keys_dir, passphrase, address=address, public_key=client_public)
        password = None
    else:
        password = secrets.token_urlsafe(24)
    with broker.management(config) as mgmt:
        mgmt.create_user(user, password)
        mgmt.set_permissions(config.broker.vhost, user, *unit_permissions(address))
    return BrokerLogin(user, broker.login_url(config, user, password), cert)


def provisioning(config: HubConfig, db: Database, identity: HubIdentity, *, address: str, name: str,
                 login: BrokerLogin, keys_dir: Path) -> Provisioning:
    """What the unit's terminal needs besides its keys, as of now."""
    with db.session() as s:
        _, directory_der = hub_directory.signed_snapshot(s, config.prefix, identity)
    return Provisioning(
        address=address,
        name=name,
        hub_prefix=config.prefix,
        broker_url=login.url,
        broker_user=login.user,
        keys_dir=keys_dir,
        ca_pem=_pem(config.ca_dir / "ca.crt"),
        anchors_pem=[p.read_bytes() for p in sorted(config.trust_dir.glob("*.crt"))],
        crl_pem=_pem(config.ca_dir / "crl.pem"),
        directory_der=directory_der,
        tsa_url=network.tsa_url(config) if (config.home / "tsa" / "tsa.crt").exists() else "",
        broker_ca_pem=config.broker_ca_pem,
        client_cert_pem=login.client_cert.public_bytes(serialization.Encoding.PEM) if login.client_cert else b"",
    )


def register_unit(
    config: HubConfig,
    db: Database,
    identity: HubIdentity,
    ca: CertificateAuthority | None,
    *,
    address: str,
    name: str,
    sign_cert: x509.Certificate,
    enc_cert: x509.Certificate,
    keys_dir: Path,
    passphrase: bytes | None = None,
    client_public: rsa.RSAPublicKey | None = None,
    kind: str = "",
    building: str = "",
    phase: str = "electronic",
    actor: str = "information-centre",
    **audit_details: object,
) -> Provisioning:
    """A unit with its certificates: its broker login and inbox queue, its directory row,
    the audit entry."""
    login = _broker_login(config, ca, address, keys_dir, passphrase, client_public=client_public)
    broker.declare(config, units=(address,))
    pem = serialization.Encoding.PEM
    with db.session() as s:
        s.add(
            Unit(
                address=address,
                name=name,
                kind=kind,
                building=building,
                phase=phase,
                sign_cert=sign_cert.public_bytes(pem).decode(),
                enc_cert=enc_cert.public_bytes(pem).decode(),
                broker_user=login.user,
                cert_not_after=min(sign_cert.not_valid_after_utc, enc_cert.not_valid_after_utc),
            )
        )
        hub_directory.bump(s)
        audit.append(s, actor, "unit.add", address, name=name, kind=kind, sign_serial=format(sign_cert.serial_number, "x"),
                     **audit_details)
    return provisioning(config, db, identity, address=address, name=name, login=login, keys_dir=keys_dir)


TERMINAL_ROLES = (CertRole.SEAL.value, CertRole.ENCRYPTION.value, CertRole.CLIENT.value)


def replace_terminal(
    config: HubConfig,
    db: Database,
    identity: HubIdentity,
    ca: CertificateAuthority,
    *,
    address: str,
    sign_cert: x509.Certificate,
    enc_cert: x509.Certificate,
    client_public: rsa.RSAPublicKey | None = None,
    actor: str = "information-centre",
    **audit_details: object,
) -> Provisioning:
    """A registered unit's new terminal: every certificate the old terminal held from this
    CA (seal, encryption, TLS login) is revoked (superseded), its broker login replaced and
    its connections closed, so its access ends; the directory carries the new encryption
    certificate."""
    pem = serialization.Encoding.PEM
    with db.read() as s:
        unit = s.get(Unit, address)
        if unit is None:
            raise DocexError("unknown_recipient", f"no unit {address} in the directory")
        name = unit.name
    keep = {format(sign_cert.serial_number, "x"), format(enc_cert.serial_number, "x")}
    revoked = []
    for record in ca.records():
        if (record.address == address and record.role in TERMINAL_ROLES and record.status == "valid"
                and record.serial not in keep):
            try:
                ca.revoke(record.serial, "superseded")
                revoked.append(record.serial)
            except PkiError as exc:
                if exc.code != "already_revoked":
                    raise
    login = _broker_login(config, ca, address, Path(), None, client_public=client_public)
    with broker.management(config) as mgmt:
        for conn in mgmt.list_connections(config.broker.vhost):
            if conn.user == login.user:
                mgmt.close_connection(conn.name, "replaced by the unit's newly approved terminal")
    with db.session() as s:
        row = s.get(Unit, address)
        assert row is not None
        row.sign_cert = sign_cert.public_bytes(pem).decode()
        row.enc_cert = enc_cert.public_bytes(pem).decode()
        row.broker_user = login.user
        row.cert_not_after = min(sign_cert.not_valid_after_utc, enc_cert.not_valid_after_utc)
        hub_directory.bump(s)
        audit.append(s, actor, "unit.terminal_replaced", address, revoked=revoked,
                     sign_serial=format(sign_cert.serial_number, "x"), **audit_details)
    return provisioning(config, db, identity, address=address, name=name, login=login, keys_dir=Path())


def set_state(config: HubConfig, db: Database, address: str, state: str, *, actor: str = "information-centre") -> None:
    """Disable or enable a unit. A disabled unit loses its broker permissions (it can
    neither send nor receive) and documents to it are refused (recipient_disabled)."""
    if state not in ("enabled", "disabled"):
        raise ValueError(state)
    with db.session() as s:
        unit = s.get(Unit, address)
        if unit is None:
            raise DocexError("unknown_recipient", f"no unit {address} in the directory")
        if unit.state == state:
            return
        unit.state = state
        hub_directory.bump(s)
        audit.append(s, actor, f"unit.{'disable' if state == 'disabled' else 'enable'}", address)
        user = unit.broker_user
    with broker.management(config) as mgmt:
        if state == "disabled":
            mgmt.clear_permissions(config.broker.vhost, user)
            for conn in mgmt.list_connections(config.broker.vhost):
                if conn.user == user:
                    mgmt.close_connection(conn.name, "unit disabled by the information centre")
        else:
            mgmt.set_permissions(config.broker.vhost, user, *unit_permissions(address))


def set_phase(db: Database, address: str, phase: str, *, actor: str = "information-centre") -> bool:
    if phase not in PHASES:
        raise DocexError("bad_metadata", f"phase must be one of {', '.join(PHASES)}")
    with db.session() as s:
        unit = s.get(Unit, address)
        if unit is None:
            raise DocexError("unknown_recipient", f"no unit {address} in the directory")
        if unit.phase == phase:
            return False
        unit.phase = phase
        hub_directory.bump(s)
        audit.append(s, actor, "unit.phase", address, phase=phase)
        return True


def list_units(db: Database) -> list[Unit]:
    with db.session() as s:
        return list(s.execute(select(Unit).order_by(Unit.address)).scalars().all())


def read_csv(path: str | Path) -> Iterator[CsvUnit]:
    """The registrable rows of a unit list (any encoding/delimiter Excel or WPS write);
    `unit_csv.read` also gives the refused rows with their line numbers."""
    yield from unit_csv.read(path).rows


def import_csv(
    config: HubConfig,
    db: Database,
    identity: HubIdentity,
    ca: CertificateAuthority | None,
    rows: list[CsvUnit],
    out_dir: str | Path,
    passphrase: bytes | None,
    *,
    existing_keys_root: str | Path | None = None,
    progress: Callable[[CsvUnit], None] | None = None,
    failures: list[SkippedRow] | None = None,
) -> list[Provisioning]:
    """Register many units; already registered ones are skipped (re-running is safe).
    Units whose CSV row says `existing_certificate=city` keep the keys found under
    `existing_keys_root/<address>/`, when given. With `failures`, a row that cannot be
    registered (its keys do not match...) is recorded there and the import goes on."""
    done = []
    known = {u.address for u in list_units(db)}
    for row in rows:
        if row.address not in known and is_under(row.address, config.prefix):
            existing = None
            if row.existing_certificate and existing_keys_root is not None:
                candidate = Path(existing_keys_root) / row.address
                existing = candidate if candidate.exists() else None
            try:
                done.append(
                    add_unit(
                        config, db, identity, ca, address=row.address, name=row.name,
                        out_dir=Path(out_dir) / row.address, passphrase=passphrase, kind=row.kind,
                        building=row.building, existing_keys=existing,
                    )
                )
            except DocexError as exc:
                if failures is None:
                    raise
                failures.append(SkippedRow(row.line, row.address, exc.code, exc.message))
        if progress is not None:
            progress(row)
    return done


def refresh_agent_directories(config: HubConfig, db: Database, identity: HubIdentity, homes: list[Path]) -> None:
    """Write the current signed snapshot into freshly provisioned agent homes, so a unit
    registered early in an import knows the units registered after it from the start."""
    with db.read() as s:
        _, der = hub_directory.signed_snapshot(s, config.prefix, identity)
    for home in homes:
        tmp = Path(home) / "directory.der.tmp"
        tmp.write_bytes(der)
        tmp.replace(Path(home) / "directory.der")
