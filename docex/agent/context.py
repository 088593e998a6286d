"""The agent's world: its config, keys, store, trust (CA, other anchors, current CRLs) and
the signed directories it knows (its own hub's and, over links, the rest of the network)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cryptography import x509

from docex.agent.config import AgentConfig
from docex.agent.store import AgentStore
from docex.monitoring.observer import NullObserver, Observer
from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificates, load_crl
from docex.pki.trust import TrustStore
from docex.protocols.address import is_under
from docex.protocols.directory import (
    DirectoryDelta,
    DirectorySnapshot,
    UnitEntry,
    apply_delta,
    verify_delta,
    verify_directory,
)
from docex.protocols.errors import DocexError
from docex.protocols.safepath import inside

PROVISIONED_ANCHOR = "anchor-"  # trust/anchor-N.crt, as `docex unit add` wrote them
MAX_PENDING = 32  # other hubs' snapshots kept until their CA reaches us
MAX_PENDING_BYTES = 16 * 1024 * 1024
MAX_DELTAS = 64  # deltas kept on top of directory.der before the agent asks for the whole snapshot
MAX_DELTA_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class DeltaOutcome:
    """What a delta did: the snapshot it produced (None if nothing changed), and whether the
    agent should ask its hub for the whole snapshot (it missed a delta, or holds many)."""

    snapshot: DirectorySnapshot | None
    ask_whole: bool


@dataclass
class AgentContext:
    config: AgentConfig
    creds: UnitCredentials
    store: AgentStore
    observer: Observer = field(default_factory=NullObserver)
    _trust: TrustStore | None = None
    _directories: dict[str, DirectorySnapshot] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _own_base: int = 0  # the version of directory.der, under the kept deltas
    _verified: dict[tuple[str, int, int], DirectoryDelta] = field(default_factory=dict)  # delta files checked
    _read: dict[Path, tuple[int, int]] = field(default_factory=dict)  # snapshot files as last read (size, mtime)
    # the passphrase the keys were opened with: the TLS client key (client.key) shares it
    key_password: bytes | None = field(default=None, repr=False)

    @classmethod
    def open(cls, home: str | Path, passphrase: bytes | None = None, *, need_keys: bool = True) -> AgentContext:
        config = AgentConfig.load(home)
        pw = passphrase if passphrase is not None else (config.keys.passphrase() if need_keys else None)
        creds = UnitCredentials.load(config.home, pw)
        ctx = cls(config, creds, AgentStore(config.database_url), key_password=pw)
        ctx.load_directories()
        return ctx

    @property
    def broker_user(self) -> str:
        return unquote(urlsplit(self.config.broker_url).username or "")

    # -- trust -------------------------------------------------------------------------------
    def _crl_dir(self) -> Path:
        return self.config.home / "crls"

    @property
    def trust(self) -> TrustStore:
        """Our hub's CA, the anchors our hub's signed snapshot carries, and any the operator
        put in trust/ by hand. The copies provisioning wrote (trust/anchor-*.crt) count only
        until our hub's snapshot speaks for itself: then removals at the hub reach us too."""
        with self._lock:
            if self._trust is None:
                home = self.config.home
                anchors = [*load_certificates(home / "ca.crt")]
                own = self._directories.get(self.config.hub_prefix)
                for path in sorted((home / "trust").glob("*.crt")):
                    if own is not None and path.name.startswith(PROVISIONED_ANCHOR):
                        continue
                    anchors.extend(load_certificates(path))
                if own is not None:
                    anchors.extend(own.anchor_certificates())
                crl_files = [home / "crl.pem", *sorted(self._crl_dir().glob("*.pem"))]
                store = TrustStore(anchors, [])
                for path in crl_files:
                    if path.exists():
                        store.add_crl(load_crl(path))
                # Our own hub's CA: its CRL must be current (crl_stale), the others' as given.
                self._trust = store.make_strict(*load_certificates(home / "ca.crt"),
                                                grace=dt.timedelta(hours=self.config.crl_grace_hours))
            return self._trust

    def _home_trust(self) -> TrustStore:
        """Our hub's CA alone (with the CRLs we hold): what our own hub's snapshot must chain to."""
        crls = [] if self._trust is None else list(self._trust.crls)
        if not crls:
            path = self.config.home / "crl.pem"
            crls = [load_crl(path)] if path.exists() else []
        return TrustStore(list(load_certificates(self.config.home / "ca.crt")), crls)

    def install_crls(self, pems: tuple[str, ...]) -> None:
        folder = self._crl_dir()
        folder.mkdir(exist_ok=True)
        for pem in pems:
            name = hashlib.sha256(pem.encode()).hexdigest()[:16]
            path = inside(folder, f"{name}.pem")
            if not path.exists():
                x509.load_pem_x509_crl(pem.encode())  # refuse garbage before writing
                tmp = path.with_suffix(".tmp")
                tmp.write_text(pem)
                tmp.replace(path)
        with self._lock:
            self._trust = None

    # -- directories -------------------------------------------------------------------------
    def _dir_path(self, prefix: str) -> Path:
        if prefix == self.config.hub_prefix:
            return self.config.home / "directory.der"
        return inside(self.config.home / "directories", f"{prefix}.der", code="directory_untrusted")

    def verify_snapshot(self, der: bytes) -> DirectorySnapshot:
        """A snapshot signed by the hub owning its prefix; our own hub's must moreover be
        signed under our hub's CA (ca.crt), not merely under any CA we trust for units'
        certificates (the city's, say), or anyone holding such a "hub" certificate could
        rewrite our directory and the anchors it carries."""
        snap = verify_directory(der, self.trust)
        if snap.prefix == self.config.hub_prefix:
            verify_directory(der, self._home_trust())
        return snap

    def _unchanged(self, path: Path) -> bool:
        """Whether `path` is as we last read it (then verifying it again would find the same)."""
        try:
            st = path.stat()
        except OSError:
            return True
        stamp = (st.st_size, st.st_mtime_ns)
        if self._read.get(path) == stamp:
            return True
        self._read[path] = stamp
        return False

    def load_directories(self) -> None:
        # Our own hub's first: it brings the anchors the others are verified with. A file not
        # changed since we read it is not parsed again (a look-up that misses calls this).
        own = self.config.home / "directory.der"
        if own.exists() and not self._unchanged(own):
            try:
                snap: DirectorySnapshot | None = verify_directory(own.read_bytes(), self._home_trust())
            except PkiError:
                snap = None
            if snap is not None and snap.prefix == self.config.hub_prefix:
                with self._lock:
                    current = self._directories.get(snap.prefix)
                    if current is None or current.version < snap.version:
                        self._directories[snap.prefix] = snap
                        self._own_base = snap.version
                        self._trust = None
                self._follow_deltas()
        elif own.exists():
            self._follow_deltas()  # the running service may have kept newer deltas
        for path in sorted((self.config.home / "directories").glob("*.der")):
            if self._unchanged(path):
                continue
            try:
                snap = self.verify_snapshot(path.read_bytes())
            except PkiError:
                continue
            current = self._directories.get(snap.prefix)
            if current is None or current.version < snap.version:
                self._directories[snap.prefix] = snap

    # -- deltas of our own hub's directory ----------------------------------------------------------
    def _delta_dir(self) -> Path:
        return self.config.home / "directory-deltas"

    def _deltas(self) -> list[tuple[Path, DirectoryDelta]]:
        """The signed deltas kept on top of directory.der, verified again (they are files)."""
        found = []
        seen = {}
        for path in sorted(self._delta_dir().glob("*.der")):
            try:
                st = path.stat()
                key = (path.name, st.st_size, st.st_mtime_ns)
                delta = self._verified.get(key) or verify_delta(path.read_bytes(), self._home_trust(),
                                                                expected_prefix=self.config.hub_prefix)
            except (OSError, PkiError):
                path.unlink(missing_ok=True)
                continue
            seen[key] = delta
            found.append((path, delta))
        self._verified = seen
        return found

    def _follow_deltas(self) -> int:
        """Apply the kept deltas that continue our own snapshot, in order; drop the ones it
        has passed. Returns how many are kept."""
        prefix = self.config.hub_prefix
        kept = self._deltas()
        with self._lock:
            current = self._directories.get(prefix)
            if current is None:
                return len(kept)
            before = current
            for path, delta in sorted(kept, key=lambda item: item[1].base_version):
                if delta.version <= self._own_base:  # under the whole snapshot on disk: done with
                    path.unlink(missing_ok=True)
                elif delta.base_version == current.version:
                    current = apply_delta(current, delta)
            self._directories[prefix] = current
        if current is not before:
            self._installed(before, current)
        return sum(1 for path, _ in kept if path.exists())

    def accept_delta(self, der: bytes) -> DeltaOutcome:
        """A signed change of our own hub's directory: applied when it continues the version we
        hold (kept on disk on top of directory.der); one that comes early is kept until the
        missing one arrives, and meanwhile the agent asks for the whole snapshot."""
        if len(der) > MAX_DELTA_BYTES:
            raise DocexError("directory_untrusted", f"a directory delta of {len(der)} bytes")
        delta = verify_delta(der, self._home_trust(), expected_prefix=self.config.hub_prefix)
        with self._lock:
            current = self._directories.get(delta.prefix)
            if current is not None and delta.version <= current.version:
                return DeltaOutcome(None, False)
            before = current.version if current is not None else 0
            folder = self._delta_dir()
            folder.mkdir(exist_ok=True)
            path = folder / f"{delta.base_version:012d}-{delta.version:012d}.der"  # our own numbers
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(der)
            tmp.replace(path)
            kept = self._follow_deltas()
            now = self._directories.get(delta.prefix)
        snap = now if now is not None and now.version > before else None
        missed = now is None or now.version < delta.version
        return DeltaOutcome(snap, missed or kept >= MAX_DELTAS)

    def _installed(self, before: DirectorySnapshot | None, snap: DirectorySnapshot) -> None:
        """After our own hub's directory moved: its anchors and CRLs take effect."""
        anchors_changed = before is None or set(before.anchors) != set(snap.anchors)
        if anchors_changed:
            with self._lock:
                self._trust = None
        if snap.crls and (before is None or set(before.crls) != set(snap.crls)):
            self.install_crls(snap.crls)
        if anchors_changed:
            self._retry_pending()

    def accept_directory(self, der: bytes) -> DirectorySnapshot | None:
        """Store a signed snapshot if it is newer than what we have. The signature must be
        that of the hub owning its prefix; our own hub's must come from our hub. Another
        hub's snapshot we cannot verify yet (its CA reaches us with our hub's next
        snapshot) is kept aside and tried again when our anchors change."""
        try:
            snap = self.verify_snapshot(der)
        except PkiError:
            self._keep_pending(der)
            raise
        own = snap.prefix == self.config.hub_prefix
        with self._lock:
            current = self._directories.get(snap.prefix)
            # Our own hub's at the version the deltas brought us to: nothing new to read, but it
            # is the new base on disk, and the deltas under it go (the agent asked for it to
            # compact them).
            rebase = own and current is not None and current.version == snap.version > self._own_base
            if current is not None and current.version >= snap.version and not rebase:
                return None
            path = self._dir_path(snap.prefix)
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(der)
            tmp.replace(path)
            self._unchanged(path)  # read as we wrote it: a look-up that misses need not verify it again
            anchors_changed = snap.prefix == self.config.hub_prefix and (
                current is None or set(current.anchors) != set(snap.anchors))
            self._directories[snap.prefix] = snap
            if snap.prefix == self.config.hub_prefix:
                self._own_base = snap.version
            if anchors_changed:
                self._trust = None
        if snap.crls:
            self.install_crls(snap.crls)
        if anchors_changed:
            self._retry_pending()
        if snap.prefix == self.config.hub_prefix:
            self._follow_deltas()  # the new whole snapshot is the base: older deltas go
        return snap

    def _pending_dir(self) -> Path:
        return self.config.home / "directories" / "pending"

    def _keep_pending(self, der: bytes) -> None:
        if len(der) > MAX_PENDING_BYTES:
            return
        folder = self._pending_dir()
        folder.mkdir(parents=True, exist_ok=True)
        kept = sorted(folder.glob("*.der"), key=lambda p: p.stat().st_mtime)
        for old in kept[: max(0, len(kept) - MAX_PENDING + 1)]:
            old.unlink(missing_ok=True)
        path = folder / f"{hashlib.sha256(der).hexdigest()[:16]}.der"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(der)
        tmp.replace(path)

    def _retry_pending(self) -> None:
        for path in sorted(self._pending_dir().glob("*.der")):
            der = path.read_bytes()
            path.unlink(missing_ok=True)
            try:
                self.accept_directory(der)
            except PkiError:
                continue  # kept again by accept_directory

    def directory_version(self) -> int:
        snap = self._directories.get(self.config.hub_prefix)
        return snap.version if snap else 0

    def lookup(self, address: str) -> UnitEntry | None:
        """The entry of any address of the network, from the most specific directory.
        On a miss the snapshots are re-read: the running service may have stored newer ones."""
        for attempt in range(2):
            with self._lock:
                for snap in sorted(self._directories.values(), key=lambda d: -len(d.prefix)):
                    if is_under(address, snap.prefix) and (entry := snap.find(address)) is not None:
                        return entry
                if attempt == 0:
                    self.load_directories()
        return None

    def directory_prefixes(self) -> list[str]:
        """The prefixes this agent holds a signed directory for (its own hub's, and those
        the hub passed on from linked hubs): within them the directory is the whole truth."""
        with self._lock:
            return sorted(self._directories)

    def directories(self) -> list[DirectorySnapshot]:
        with self._lock:
            return list(self._directories.values())

    def units(self) -> list[UnitEntry]:
        with self._lock:
            return [u for snap in self._directories.values() for u in snap.units]
