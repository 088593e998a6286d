"""The hub's own keys and the trust it extends: its server certificate (which signs
directory snapshots and notices), the CA(s) it trusts and their current CRLs.

The trust is re-read when its files change, in every process of the hub (the intake
workers run no scheduler): a CRL rewritten (a revocation), and a CA or CRL file added to
or removed from HUBDIR/trust (`docex link create --child-ca`, `bridge run
--trust-parent-ca`, anchors learned from the parent) take effect without a restart. Each
use costs a stat of the folder and of each file; the folder is listed again only when its
mtime moved. A change that does not load (a file half written) keeps the trust loaded
before, whole, until the files load again; it is logged once, as is each change taken."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from docex.hub.config import HubConfig
from docex.pki.errors import PkiError
from docex.pki.keys import (
    PrivateKey,
    load_certificate,
    load_certificates,
    load_crl,
    load_private_key,
)
from docex.pki.names import common_name
from docex.pki.trust import TrustStore

log = logging.getLogger(__name__)

# A folder or file changed this recently may change again within the same mtime tick:
# look again at the next use rather than trust an equal mtime.
SETTLE_NS = 2_000_000_000

Stamp = tuple[tuple[str, int, int, int], ...]


@dataclass
class HubIdentity:
    cert: x509.Certificate
    key: PrivateKey
    ca_cert: x509.Certificate
    anchor_files: list[Path]
    crl_files: list[Path]
    crl_grace_hours: float = 72.0
    trust_dir: Path | None = None  # HUBDIR/trust, whose *.crt and *.crl join and leave while we run
    _trust: TrustStore | None = None
    _mtimes: Stamp = ()
    _refused: Stamp | None = None  # the files as they were when they last failed to load
    _dir_mtime: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, config: HubConfig, passphrase: bytes | None) -> HubIdentity:
        hub_dir = config.hub_dir
        identity = cls(
            cert=load_certificate(hub_dir / "server.crt"),
            key=load_private_key(hub_dir / "server.key", passphrase),
            ca_cert=load_certificate(config.ca_dir / "ca.crt"),
            anchor_files=[config.ca_dir / "ca.crt"],
            crl_files=[config.ca_dir / "crl.pem"],
            crl_grace_hours=config.limits.crl_grace_hours,
            trust_dir=config.trust_dir,
        )
        identity._scan()
        return identity

    def _scan(self) -> None:
        """Bring the file lists in line with the trust folder (with the lock held, or alone)."""
        folder = self.trust_dir
        if folder is None:
            return
        try:
            mtime = folder.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if mtime == self._dir_mtime and time.time_ns() - mtime > SETTLE_NS:
            return
        self._dir_mtime = mtime
        anchors = sorted(folder.glob("*.crt")) if mtime >= 0 else []
        crls = sorted(folder.glob("*.crl")) if mtime >= 0 else []
        self.anchor_files[:] = [p for p in self.anchor_files if p.parent != folder] + anchors
        self.crl_files[:] = [p for p in self.crl_files if p.parent != folder] + crls

    def _stamp(self) -> Stamp:
        out = []
        for path in (*self.anchor_files, *self.crl_files):
            try:
                st = path.stat()
                out.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                out.append((str(path), 0, 0, -1))
        return tuple(out)

    def _load(self) -> TrustStore:
        anchors = [c for p in self.anchor_files if p.exists() for c in load_certificates(p)]
        crls = [load_crl(p) for p in self.crl_files if p.exists()]
        # Our own CA's revocations must be current (crl_stale otherwise); others' as given.
        return TrustStore(anchors, crls).make_strict(self.ca_cert, grace=dt.timedelta(hours=self.crl_grace_hours))

    def _current(self) -> tuple[TrustStore, bool]:
        with self._lock:
            self._scan()
            stamp = self._stamp()
            old = self._trust
            if old is not None and (stamp == self._mtimes or stamp == self._refused):
                return old, False
            try:
                new = self._load()
            except (OSError, ValueError, PkiError) as exc:
                if old is None:
                    raise  # at start: the operator must see it
                self._refused = stamp
                log.warning("the hub's trust files changed but do not load (%s): the trust loaded before stays "
                            "in force until they do", exc)
                return old, False
            self._trust, self._mtimes, self._refused = new, stamp, None
        if old is not None:
            _log_change(old, new)
        return new, True

    @property
    def trust(self) -> TrustStore:
        return self._current()[0]

    def refresh(self) -> bool:
        """Look at the trust files now; True when a new trust was loaded from them."""
        return self._current()[1]

    def files(self) -> tuple[list[Path], list[Path]]:
        """The anchor and CRL files the trust is read from, as they are now."""
        with self._lock:
            self._scan()
            return list(self.anchor_files), list(self.crl_files)


def _log_change(old: TrustStore, new: TrustStore) -> None:
    def names(store: TrustStore) -> dict[bytes, str]:
        from cryptography.hazmat.primitives import hashes

        return {a.fingerprint(hashes.SHA256()): common_name(a) or a.subject.rfc4514_string() for a in store.anchors}

    before, after = names(old), names(new)
    added = [after[f] for f in after if f not in before]
    removed = [before[f] for f in before if f not in after]
    if added or removed:
        log.info("trust anchors changed: %s", "; ".join([*(f"+{n}" for n in added), *(f"-{n}" for n in removed)]))
    else:
        log.info("trust reloaded: %d anchor(s), %d CRL(s)", len(new.anchors), len(new.crls))
