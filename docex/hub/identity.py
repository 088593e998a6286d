"""The hub's own keys and the trust it extends: its server certificate (which signs
directory snapshots and notices), the CA(s) it trusts and their current CRLs. CRL files
are re-read when they change, so a revocation takes effect without a restart."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from docex.hub.config import HubConfig
from docex.pki.keys import (
    PrivateKey,
    load_certificate,
    load_certificates,
    load_crl,
    load_private_key,
)
from docex.pki.trust import TrustStore


@dataclass
class HubIdentity:
    cert: x509.Certificate
    key: PrivateKey
    ca_cert: x509.Certificate
    anchor_files: list[Path]
    crl_files: list[Path]
    crl_grace_hours: float = 72.0
    _trust: TrustStore | None = None
    _mtimes: tuple[float, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, config: HubConfig, passphrase: bytes | None) -> HubIdentity:
        hub_dir = config.hub_dir
        anchors = [config.ca_dir / "ca.crt", *sorted(config.trust_dir.glob("*.crt"))]
        crls = [config.ca_dir / "crl.pem", *sorted(config.trust_dir.glob("*.crl"))]
        return cls(
            cert=load_certificate(hub_dir / "server.crt"),
            key=load_private_key(hub_dir / "server.key", passphrase),
            ca_cert=load_certificate(config.ca_dir / "ca.crt"),
            anchor_files=anchors,
            crl_files=crls,
            crl_grace_hours=config.limits.crl_grace_hours,
        )

    def _stamp(self) -> tuple[float, ...]:
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in (*self.anchor_files, *self.crl_files))

    @property
    def trust(self) -> TrustStore:
        stamp = self._stamp()
        with self._lock:
            if self._trust is None or stamp != self._mtimes:
                anchors = [c for p in self.anchor_files if p.exists() for c in load_certificates(p)]
                crls = [load_crl(p) for p in self.crl_files if p.exists()]
                # Our own CA's revocations must be current (crl_stale otherwise); others' as given.
                self._trust = TrustStore(anchors, crls).make_strict(
                    self.ca_cert, grace=dt.timedelta(hours=self.crl_grace_hours))
                self._mtimes = stamp
            return self._trust
