"""Directory snapshots: every unit a hub owns (address, name, kind, state, rollout phase,
certificates, seal impression), signed by that hub and versioned. Agents look up
recipients' encryption certificates here; across a link, hubs exchange snapshots and each
is accepted only when signed by the hub owning its prefix.

A change reaches agents as a signed delta from version N to M (the units added or changed,
whole, and the addresses removed, with the snapshot's small fields whole): its cost grows
with the change, not with the county. A delta is verified like a snapshot (the hub owning
its prefix signed it, every address well formed and under that prefix) and applies only to
exactly version N; an agent that missed one asks for the whole snapshot."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from docex.pki.keys import PrivateKey
from docex.pki.names import CertRole, hub_prefix_of, is_valid_address
from docex.pki.trust import TrustStore
from docex.protocols.address import is_under
from docex.protocols.errors import DocexError
from docex.protocols.statement import sign_statement, verify_statement

KIND = "directory"
DELTA_KIND = "directory-delta"


@dataclass(frozen=True)
class UnitEntry:
    address: str
    name: str
    kind: str = ""
    state: str = "enabled"  # enabled | disabled
    phase: str = "electronic"  # pilot | dual_track | electronic
    sign_cert: str = ""  # PEM
    enc_cert: str = ""  # PEM
    seal_png: str = ""  # base64 of the registered seal impression (印模), if any

    def enc_certificate(self) -> x509.Certificate:
        return _certificate(self.enc_cert, self.address)

    def sign_certificate(self) -> x509.Certificate:
        return _certificate(self.sign_cert, self.address)

    def seal_image(self) -> bytes | None:
        try:
            return base64.b64decode(self.seal_png, validate=True) if self.seal_png else None
        except ValueError as exc:
            raise DocexError("directory_untrusted", f"the seal impression of {self.address} is not base64") from exc


def _certificate(pem: str, address: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise DocexError("directory_untrusted", f"the directory's certificate for {address} cannot be read") from exc


@dataclass(frozen=True)
class DirectorySnapshot:
    prefix: str
    version: int
    generated_at: str
    units: tuple[UnitEntry, ...] = ()
    hub_cert: str = ""  # PEM of the signing hub's certificate, for chained snapshots
    children: tuple[str, ...] = field(default_factory=tuple)
    crls: tuple[str, ...] = field(default_factory=tuple)  # current CRLs (PEM) the hub trusts
    # Other CAs (PEM) the hub trusts, configured or learned over its links. Agents take them
    # only from their own hub's snapshot (pinned to their hub's CA).
    anchors: tuple[str, ...] = field(default_factory=tuple)
    # Whether the hub hands addresses outside its prefix to a parent exchange. A hub
    # without one is the top of the network: nothing outside its prefix exists.
    has_parent: bool = True

    def to_payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["units"] = [asdict(u) for u in self.units]
        data["children"] = list(self.children)
        data["crls"] = list(self.crls)
        data["anchors"] = list(self.anchors)
        return data

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> DirectorySnapshot:
        try:
            return cls(
                prefix=str(data["prefix"]),
                version=int(data["version"]),
                generated_at=str(data["generated_at"]),
                units=tuple(UnitEntry(**{k: "" if v is None else str(v) for k, v in u.items()}) for u in data.get("units", ())),
                hub_cert=str(data.get("hub_cert", "")),
                children=tuple(str(c) for c in data.get("children", ())),
                crls=tuple(str(c) for c in data.get("crls", ())),
                anchors=tuple(str(c) for c in data.get("anchors", ())),
                has_parent=bool(data.get("has_parent", True)),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise DocexError("directory_untrusted", "the directory snapshot is not well formed") from exc

    def anchor_certificates(self) -> list[x509.Certificate]:
        """The anchors that parse as CA certificates; anything else is skipped."""
        out = []
        for pem in self.anchors:
            try:
                cert = x509.load_pem_x509_certificate(pem.encode())
                constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            except (ValueError, x509.ExtensionNotFound):
                continue
            if constraints.ca:
                out.append(cert)
        return out

    @cached_property
    def _by_address(self) -> dict[str, UnitEntry]:
        return {unit.address: unit for unit in self.units}

    def find(self, address: str) -> UnitEntry | None:
        """One dictionary look-up, however many units (built once per snapshot)."""
        return self._by_address.get(address)


@dataclass(frozen=True)
class DirectoryDelta:
    """What changed from snapshot `base_version` to `version`: units added or changed (whole
    entries), addresses removed, and the snapshot's other fields as they are now."""

    prefix: str
    base_version: int
    version: int
    generated_at: str
    units: tuple[UnitEntry, ...] = ()
    removed: tuple[str, ...] = ()
    hub_cert: str = ""
    children: tuple[str, ...] = field(default_factory=tuple)
    crls: tuple[str, ...] = field(default_factory=tuple)
    anchors: tuple[str, ...] = field(default_factory=tuple)
    has_parent: bool = True

    def to_payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["units"] = [asdict(u) for u in self.units]
        for name in ("removed", "children", "crls", "anchors"):
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> DirectoryDelta:
        try:
            base = DirectorySnapshot.from_payload({**data, "version": data["version"]})
            return cls(prefix=base.prefix, base_version=int(data["base_version"]), version=base.version,
                       generated_at=base.generated_at, units=base.units,
                       removed=tuple(str(a) for a in data.get("removed", ())), hub_cert=base.hub_cert,
                       children=base.children, crls=base.crls, anchors=base.anchors, has_parent=base.has_parent)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise DocexError("directory_untrusted", "the directory delta is not well formed") from exc


def diff(old: DirectorySnapshot, new: DirectorySnapshot) -> DirectoryDelta:
    """The delta that turns `old` into `new` (same prefix, newer version)."""
    if old.prefix != new.prefix or new.version <= old.version:
        raise ValueError(f"no delta from {old.prefix} v{old.version} to {new.prefix} v{new.version}")
    before = old._by_address
    changed = tuple(u for u in new.units if before.get(u.address) != u)
    removed = tuple(sorted(set(before) - set(new._by_address)))
    return DirectoryDelta(prefix=new.prefix, base_version=old.version, version=new.version,
                          generated_at=new.generated_at, units=changed, removed=removed, hub_cert=new.hub_cert,
                          children=new.children, crls=new.crls, anchors=new.anchors, has_parent=new.has_parent)


def apply_delta(snapshot: DirectorySnapshot, delta: DirectoryDelta) -> DirectorySnapshot:
    """`snapshot` moved to the delta's version. Only onto exactly its base version."""
    if delta.prefix != snapshot.prefix or delta.base_version != snapshot.version:
        raise DocexError("directory_untrusted", f"a delta from {delta.prefix} v{delta.base_version} does not apply "
                                                f"to {snapshot.prefix} v{snapshot.version}")
    units = dict(snapshot._by_address)
    for address in delta.removed:
        units.pop(address, None)
    units.update((u.address, u) for u in delta.units)
    return DirectorySnapshot(prefix=delta.prefix, version=delta.version, generated_at=delta.generated_at,
                             units=tuple(units[a] for a in sorted(units)), hub_cert=delta.hub_cert,
                             children=delta.children, crls=delta.crls, anchors=delta.anchors,
                             has_parent=delta.has_parent)


def no_hub_knows(snapshots: Iterable[DirectorySnapshot], address: str) -> bool:
    """Whether the directories in hand settle that `address` exists nowhere: the most
    specific snapshot covering it does not list it, nor does it hand its prefix to a child
    hub (whose own snapshot would); or no snapshot covers it and we hold the top hub's
    (one with no parent). Otherwise False: it may still become known."""
    known = list(snapshots)
    covering = [s for s in known if is_under(address, s.prefix) and address != s.prefix]
    if not covering:
        # outside the tree of the network's top hub: no hub anywhere delivers it
        return any(not s.has_parent for s in known)
    best = max(covering, key=lambda s: len(s.prefix))
    if best.find(address) is not None:
        return False
    return not any(is_under(address, child) for child in best.children)


def sign_directory(snapshot: DirectorySnapshot, cert: x509.Certificate, key: PrivateKey) -> bytes:
    if hub_prefix_of(cert) != snapshot.prefix:
        raise DocexError("directory_untrusted", "a hub signs only the directory of its own prefix")
    return sign_statement(KIND, snapshot.to_payload(), cert, key)


def sign_delta(delta: DirectoryDelta, cert: x509.Certificate, key: PrivateKey) -> bytes:
    if hub_prefix_of(cert) != delta.prefix:
        raise DocexError("directory_untrusted", "a hub signs only the directory of its own prefix")
    return sign_statement(DELTA_KIND, delta.to_payload(), cert, key)


def _check_owner(prefix: str, addresses: Iterable[str], children: Iterable[str], signer: x509.Certificate,
                 expected_prefix: str | None) -> None:
    # Prefixes and addresses name files and queues on the receiving side: their form first.
    addresses = tuple(addresses)
    for name in (prefix, *children, *addresses):
        if not is_valid_address(name):
            raise DocexError("directory_untrusted", f"{name[:80]!r} is not a valid address or prefix")
    owner = hub_prefix_of(signer)
    if owner != prefix or (expected_prefix is not None and owner != expected_prefix):
        raise DocexError("directory_untrusted", f"a directory of {prefix} signed by the hub of {owner}")
    for address in addresses:
        if not is_under(address, prefix):
            raise DocexError("directory_untrusted", f"{address} is outside {prefix}")


def verify_directory(der: bytes, trust: TrustStore, *, expected_prefix: str | None = None) -> DirectorySnapshot:
    """Accept a snapshot only when signed by the hub that owns its prefix, and only with
    units under that prefix."""
    statement = verify_statement(
        der, trust, kind=KIND, roles=(CertRole.SERVER,), error_code="directory_untrusted"
    )
    snapshot = DirectorySnapshot.from_payload(statement.payload)
    _check_owner(snapshot.prefix, (u.address for u in snapshot.units), snapshot.children, statement.signer,
                 expected_prefix)
    return snapshot


def verify_delta(der: bytes, trust: TrustStore, *, expected_prefix: str | None = None) -> DirectoryDelta:
    """A delta passes the checks a snapshot does, and moves forward: version > base."""
    statement = verify_statement(
        der, trust, kind=DELTA_KIND, roles=(CertRole.SERVER,), error_code="directory_untrusted"
    )
    delta = DirectoryDelta.from_payload(statement.payload)
    _check_owner(delta.prefix, (*(u.address for u in delta.units), *delta.removed), delta.children,
                 statement.signer, expected_prefix)
    if delta.version <= delta.base_version or delta.base_version < 0:
        raise DocexError("directory_untrusted", f"a delta from v{delta.base_version} to v{delta.version}")
    return delta


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()
