"""Audit checkpoints: the chain head, signed by the hub's key and timestamped by the TSA,
kept outside the database (HUBDIR/audit-checkpoints/NNNNNNNN.p7s) and sent up the parent
link, where the parent hub keeps a copy. The hash chain alone only shows edits by someone
who cannot recompute it; whoever can write the database can also rewrite the chain, cut
its tail together with the stored head, or empty it. A checkpoint names the id, hash and
count of the last entry it covers, so each of these no longer verifies.

Checkpoints are made at a regular interval (the scheduler, when anything was audited
since) and after every audited operator action (unit, seal, link changes...). Each
names the digest of the one before (so none can go missing unseen) and is itself recorded
in the chain as `audit.checkpoint`. Entries after the newest checkpoint are protected by
the chain only until the next one: the interval bounds that window."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import func, select

from docex.hub import audit, outbox
from docex.hub.config import HubConfig
from docex.hub.db import Database
from docex.hub.models import AuditEntry, Link, Setting
from docex.pki.errors import PkiError
from docex.pki.keys import PrivateKey
from docex.pki.timestamps import (
    Stamper,
    add_signature_timestamp,
)
from docex.pki.trust import TrustStore
from docex.protocols import messages
from docex.protocols.address import Route, check_address
from docex.protocols.checkpoint import (
    KIND,
    Checkpoint,
    payload_digest,
    read_checkpoint,
    unverified_payload,
)
from docex.protocols.statement import sign_statement

__all__ = ["KIND", "Checkpoint", "CheckpointReport", "make", "payload_digest", "read_checkpoint", "verify"]

log = logging.getLogger(__name__)

FOLDER = "audit-checkpoints"
SEQ_KEY = "audit_checkpoint_seq"
_NAME = re.compile(r"^(\d{8})\.p7s$")


def checkpoint_dir(config: HubConfig) -> Path:
    return config.home / FOLDER


def _seqs(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(m.group(1)): p for p in folder.iterdir() if (m := _NAME.match(p.name))}


def _write_new(path: Path, data: bytes) -> None:
    """Write a file that must not exist yet, whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # fails if a checkpoint of this number exists
    finally:
        tmp.unlink()


def make(config: HubConfig, db: Database, cert: x509.Certificate, key: PrivateKey, stamper: Stamper | None,
         reason: str, *, actor: str = "hub", only_if_changed: bool = False) -> Checkpoint | None:
    """Checkpoint the chain's current head: sign, timestamp, write, record in the chain
    and owe the parent hub a copy. With `only_if_changed` (the scheduler), nothing is done
    when the last entry is the previous checkpoint's own."""
    folder = checkpoint_dir(config)
    folder.mkdir(mode=0o700, exist_ok=True)
    with db.session() as s:
        last = s.execute(select(AuditEntry.id, AuditEntry.hash, AuditEntry.action)
                         .order_by(AuditEntry.id.desc()).limit(1)).first()
        if only_if_changed and (last is None or last.action == "audit.checkpoint"):
            return None
        count = s.execute(select(func.count(AuditEntry.id))).scalar_one()
        files = _seqs(folder)
        stored = s.get(Setting, SEQ_KEY)
        seq = max(int(stored.value) if stored is not None else 0, max(files, default=0)) + 1
        prev = ""
        if seq - 1 in files:
            prev = payload_digest(unverified_payload(files[seq - 1].read_bytes()))
        cp = Checkpoint(config.prefix, seq, last.id if last else 0, count, last.hash if last else audit.GENESIS,
                        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), reason, prev)
        der = sign_statement(KIND, cp.payload(), cert, key)
        if stamper is not None:
            der = add_signature_timestamp(der, stamper)
        _write_new(folder / f"{seq:08d}.p7s", der)
        audit.append(s, actor, "audit.checkpoint", str(seq), head=cp.head, last_id=cp.last_id, entries=cp.entries,
                     digest=payload_digest(cp.payload()), reason=reason)
        if stored is None:
            s.add(Setting(key=SEQ_KEY, value=str(seq)))
        else:
            stored.value = str(seq)
        parent = s.execute(select(Link.name).where(Link.role == "parent")).scalar_one_or_none()
        if parent is not None:  # the relay job publishes it; the parent keeps a copy
            outbox.add(s, key=f"checkpoint|{config.prefix}|{seq}", kind=messages.CHECKPOINT,
                       route=Route("parent", parent), address="", body=der)
    log.info("audit checkpoint %d: %d entries, head %s (%s)", seq, cp.entries, cp.head[:12], reason)
    return cp


@dataclass
class CheckpointReport:
    ok: bool = True
    checkpoints: int = 0
    latest: dict[str, Any] | None = None
    problems: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def fail(self, code: str, message: str) -> None:
        self.ok = False
        self.problems.append({"code": code, "message": message})


def trust_of(config: HubConfig) -> TrustStore:
    """The hub's trust from its files alone (no key needed)."""
    anchors = [config.ca_dir / "ca.crt", *sorted(config.trust_dir.glob("*.crt"))]
    crls = [config.ca_dir / "crl.pem", *sorted(config.trust_dir.glob("*.crl"))]
    return TrustStore.from_files(anchors, crls)


def verify(config: HubConfig, db: Database, trust: TrustStore | None = None) -> CheckpointReport:
    """Check every checkpoint file and that the database still holds what each names."""
    trust = trust or trust_of(config)
    report = CheckpointReport()
    files = _seqs(checkpoint_dir(config))
    cps: list[Checkpoint] = []
    unstamped = 0
    for seq in sorted(files):
        try:
            cp, stamped_at = read_checkpoint(files[seq].read_bytes(), trust, hub=config.prefix)
        except PkiError as exc:
            report.fail("checkpoint_invalid", f"checkpoint {seq}: [{exc.code}] {exc.message}")
            continue
        if cp.seq != seq:
            report.fail("checkpoint_invalid", f"file {files[seq].name} holds checkpoint {cp.seq}")
            continue
        unstamped += stamped_at is None
        cps.append(cp)
    report.checkpoints = len(cps)
    if unstamped:
        report.warnings.append(f"{unstamped} checkpoint(s) carry no timestamp (this hub has no TSA)")
    expected = 1
    for index, cp in enumerate(cps):
        if cp.seq != expected:
            report.fail("checkpoint_missing", f"checkpoints {expected}..{cp.seq - 1} are missing")
        elif index and cp.prev != payload_digest(cps[index - 1].payload()):
            report.fail("checkpoint_missing", f"checkpoint {cp.seq} does not follow checkpoint {cp.seq - 1}")
        expected = cp.seq + 1
    with db.read() as s:
        for cp in cps:
            if cp.last_id == 0:
                continue
            row = s.get(AuditEntry, cp.last_id)
            covered = s.execute(select(func.count(AuditEntry.id)).where(AuditEntry.id <= cp.last_id)).scalar_one()
            if row is None:
                report.fail("entries_missing", f"entry {cp.last_id}, the head of checkpoint {cp.seq}, is missing")
            elif row.hash != cp.head:
                report.fail("chain_rewritten", f"entry {cp.last_id} no longer has the hash checkpoint {cp.seq} "
                            "signed: the chain was recomputed")
            if covered != cp.entries:
                report.fail("entries_missing", f"checkpoint {cp.seq} covers {cp.entries} entries, "
                            f"the log holds {covered} up to entry {cp.last_id}")
        latest = cps[-1] if cps else None
        head = s.get(Setting, audit.HEAD_KEY)
        if latest is not None and latest.entries and head is None:
            report.fail("head_missing", "the stored chain head is missing")
        named = [int(v) for v in s.execute(select(AuditEntry.subject).where(AuditEntry.action == "audit.checkpoint"))
                 .scalars() if v.isdigit()]
        newest_named = max(named, default=0)
        if newest_named > (latest.seq if latest else 0):
            report.fail("checkpoint_missing", f"the log records checkpoint {newest_named}, its file is missing")
        total = s.execute(select(func.count(AuditEntry.id))).scalar_one()
    if latest is None and total:
        report.warnings.append("no checkpoint yet: the chain is not yet protected against database writers")
    if latest is not None:
        report.latest = latest.payload()
    return report


def covering(config: HubConfig, entry_id: int) -> bytes | None:
    """The oldest checkpoint covering audit entry `entry_id` (as stored), or None."""
    files = _seqs(checkpoint_dir(config))
    for seq in sorted(files):
        der = files[seq].read_bytes()
        try:
            if int(unverified_payload(der)["last_id"]) >= entry_id:
                return der
        except (ValueError, KeyError, TypeError):
            continue
    return None


# -- the parent's copy ------------------------------------------------------------------------------
def remote_dir(config: HubConfig, prefix: str) -> Path:
    check_address(prefix)
    return checkpoint_dir(config) / "remote" / prefix


def keep_remote(config: HubConfig, der: bytes, trust: TrustStore, child_prefix: str) -> tuple[Checkpoint, bool]:
    """A child hub's checkpoint that came over its link: verified, kept as received.
    Returns it and whether it is new (a redelivery is not)."""
    cp, _ = read_checkpoint(der, trust, hub=child_prefix)
    folder = remote_dir(config, child_prefix)
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    path = folder / f"{cp.seq:08d}.p7s"
    if path.exists():
        if path.read_bytes() != der:
            raise PkiError("duplicate", f"a different checkpoint {cp.seq} of {child_prefix} is already kept")
        return cp, False
    _write_new(path, der)
    return cp, True


# -- hooks ----------------------------------------------------------------------------------------
def operator_hook(config: HubConfig, passphrase: Callable[[], bytes | None]) -> Callable[[str], None]:
    """What a Database calls after committing an audited operator action: a checkpoint
    (the hub's key and TSA are loaded then, not before)."""

    def checkpoint(action: str) -> None:
        from docex.hub.identity import HubIdentity
        from docex.hub.stamping import load_stamper

        db = Database(config.database_url)
        try:
            pw = passphrase()
            identity = HubIdentity.load(config, pw)
            make(config, db, identity.cert, identity.key, load_stamper(config, pw), f"operator: {action}",
                 actor="hub")
        except (PkiError, OSError) as exc:
            log.warning("no audit checkpoint after %s: %s", action, exc)
        finally:
            db.dispose()

    return checkpoint


def open_database(config: HubConfig, passphrase: Callable[[], bytes | None] | None = None) -> Database:
    """The hub's database for operator commands: every audited operator action is
    followed by a checkpoint."""
    db = Database(config.database_url)
    db.after_operator_action = operator_hook(config, passphrase or config.keys.passphrase)
    return db
