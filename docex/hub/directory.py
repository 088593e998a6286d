"""The hub's directory: units as the database holds them, as a signed, versioned snapshot
for agents (and, across a link, for other hubs). Every change bumps the version; the
running hub notices and publishes it to every unit within seconds: as a signed delta from
the version it published last (what changed, not the whole county), the whole snapshot
only to agents that ask for it (a new one, or one that missed a delta) and over links."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session

from docex.hub.identity import HubIdentity
from docex.hub.models import Link, Setting, Unit
from docex.pki.errors import PkiError
from docex.pki.recipients import usable_for_encryption
from docex.pki.trust import TrustStore
from docex.protocols.directory import (
    DirectorySnapshot,
    UnitEntry,
    cert_pem,
    diff,
    sign_delta,
    sign_directory,
)
from docex.protocols.localtime import today
from docex.protocols.manifest import utcnow_iso

VERSION_KEY = "directory_version"
PUBLISHED_KEY = "directory_published"


def _get_int(session: Session, key: str) -> int:
    row = session.get(Setting, key)
    return int(row.value) if row is not None and row.value else 0


def _set(session: Session, key: str, value: str) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def version(session: Session) -> int:
    return _get_int(session, VERSION_KEY)


def published_version(session: Session) -> int:
    return _get_int(session, PUBLISHED_KEY)


def mark_published(session: Session, value: int) -> None:
    _set(session, PUBLISHED_KEY, str(value))


def crl_digest(identity: HubIdentity) -> str:
    """What the hub's trust consists of (anchors and CRLs): a change means a new snapshot,
    so that revocations and added or removed anchors reach every agent."""
    import hashlib

    h = hashlib.sha256()
    anchors, crls = identity.files()
    for path in (*anchors, *crls):
        if path.exists():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def anchor_pems(identity: HubIdentity) -> tuple[str, ...]:
    """Every CA the hub trusts besides its own, once each (sorted, so the snapshot is stable)."""
    own = identity.ca_cert.fingerprint(hashes.SHA256())
    seen = {own}
    pems = []
    for cert in identity.trust.anchors:
        fp = cert.fingerprint(hashes.SHA256())
        if fp not in seen:
            seen.add(fp)
            pems.append(cert_pem(cert))
    return tuple(sorted(pems))


def crls_changed(session: Session, identity: HubIdentity) -> bool:
    row = session.get(Setting, "crl_digest")
    return row is None or row.value != crl_digest(identity)


def note_crls(session: Session, identity: HubIdentity) -> bool:
    """Bump the version when a CRL changed (a revocation), so agents get it promptly."""
    digest = crl_digest(identity)
    row = session.get(Setting, "crl_digest")
    if row is not None and row.value == digest:
        return False
    _set(session, "crl_digest", digest)
    if row is not None:
        bump(session)
        return True
    return False


def bump(session: Session) -> int:
    """Record that the directory changed (in the caller's transaction)."""
    new = version(session) + 1
    _set(session, VERSION_KEY, str(new))
    return new


def snapshot(session: Session, prefix: str, identity: HubIdentity, children: tuple[str, ...] = ()) -> DirectorySnapshot:
    units = session.execute(select(Unit).order_by(Unit.address)).scalars().all()
    trust = identity.trust
    return DirectorySnapshot(
        prefix=prefix,
        version=version(session),
        generated_at=utcnow_iso(),
        units=tuple(
            UnitEntry(
                address=u.address,
                name=u.name,
                kind=u.kind,
                state=u.state,
                phase=u.phase,
                sign_cert="",  # signers prove themselves in every envelope; keep snapshots small
                enc_cert=_listable(u.enc_cert, trust),
            )
            for u in units
        ),
        hub_cert=cert_pem(identity.cert),
        children=children,
        crls=tuple(p.read_text() for p in identity.files()[1] if p.exists()),
        anchors=anchor_pems(identity),
        has_parent=session.execute(select(Link.name).where(Link.role == "parent")).first() is not None,
    )


def _listable(pem: str, trust: TrustStore) -> str:
    """The unit's encryption certificate, or "" when revoked or expired: nobody should
    encrypt to it any more (senders then refuse at source, `certificate_revoked`)."""
    if not pem:
        return ""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return ""
    return pem if usable_for_encryption(cert, trust) is None else ""


_cache_lock = threading.Lock()
_cache: dict[tuple[object, ...], tuple[DirectorySnapshot, bytes]] = {}


def _cache_key(session: Session, prefix: str, identity: HubIdentity, children: tuple[str, ...]) -> tuple[object, ...]:
    # What a snapshot is made of besides the version: trust (anchors, CRLs), the links, and
    # the day (certificates expire without a version bump).
    has_parent = session.execute(select(Link.name).where(Link.role == "parent")).first() is not None
    return (prefix, version(session), crl_digest(identity), children, has_parent, today(), id(identity))


def current_snapshot(session: Session, prefix: str, identity: HubIdentity,
                     children: tuple[str, ...] = ()) -> tuple[DirectorySnapshot, bytes]:
    """The current snapshot and its signature, made once per version (not once per agent
    asking: after a broker restart every agent asks at once)."""
    key = _cache_key(session, prefix, identity, children)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    snap = snapshot(session, prefix, identity, children)
    made = (snap, sign_directory(snap, identity.cert, identity.key))
    with _cache_lock:
        _cache.clear()  # only the newest is asked for
        _cache[key] = made
    return made


def signed_snapshot(session: Session, prefix: str, identity: HubIdentity, children: tuple[str, ...] = ()) -> tuple[int, bytes]:
    snap, der = current_snapshot(session, prefix, identity, children)
    return snap.version, der


# -- what was published last, to make the next delta from ---------------------------------------
def _published_path(home: Path) -> Path:
    return home / "directory" / "published.json"


def load_published(home: Path, expected_version: int) -> DirectorySnapshot | None:
    """The snapshot the hub published last (its own file), if it is the version the database
    says was published; None otherwise (then the whole snapshot goes out)."""
    try:
        snap = DirectorySnapshot.from_payload(json.loads(_published_path(home).read_text("utf-8")))
    except (OSError, ValueError, PkiError):
        return None
    return snap if snap.version == expected_version else None


def save_published(home: Path, snap: DirectorySnapshot) -> None:
    path = _published_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snap.to_payload(), ensure_ascii=False), "utf-8")
    tmp.replace(path)


def signed_delta(previous: DirectorySnapshot, current: DirectorySnapshot, identity: HubIdentity) -> bytes:
    return sign_delta(diff(previous, current), identity.cert, identity.key)
