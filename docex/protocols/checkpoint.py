"""Audit checkpoints as statements: the head of a hub's audit chain (the id, hash and
count of its last entry), signed by the hub and timestamped by its TSA. Made and checked
against the database by docex.hub.checkpoints; read here, with no database, so that an
evidence bundle's checkpoint is verifiable offline."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from docex.pki import cms
from docex.pki.errors import PkiError
from docex.pki.names import CertRole, hub_prefix_of
from docex.pki.timestamps import signature_timestamp, verify_signature_timestamp
from docex.pki.trust import TrustStore

KIND = "audit_checkpoint"
GENESIS = "0" * 64


def _canonical_time(at: dt.datetime) -> str:
    # SQLite hands back naive datetimes, PostgreSQL aware ones: hash the UTC wall time.
    if at.tzinfo is not None:
        at = at.astimezone(dt.UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def entry_hash(prev_hash: str, at: dt.datetime, actor: str, action: str, subject: str, detail: str) -> str:
    """The hash of one audit entry: it covers the previous entry's hash and the entry."""
    material = "\x1f".join((prev_hash, _canonical_time(at), actor, action, subject, detail))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def payload_digest(payload: dict[str, Any]) -> str:
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    hub: str
    seq: int
    last_id: int
    entries: int
    head: str
    at: str
    reason: str
    prev: str  # payload digest of checkpoint seq-1 ("" for the first)

    def payload(self) -> dict[str, Any]:
        return {"hub": self.hub, "seq": self.seq, "last_id": self.last_id, "entries": self.entries,
                "head": self.head, "at": self.at, "reason": self.reason, "prev": self.prev}

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Checkpoint:
        try:
            return cls(str(p["hub"]), int(p["seq"]), int(p["last_id"]), int(p["entries"]), str(p["head"]),
                       str(p["at"]), str(p["reason"]), str(p["prev"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PkiError("checkpoint_invalid", "the checkpoint's fields are not as expected") from exc



def unverified_payload(der: bytes) -> dict[str, Any]:
    info = cms._ContentInfo.load(der)
    content = cms._encap_bytes(info["content"]["encap_content_info"]["content"])
    data = json.loads(content.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a checkpoint")
    return data


def read_checkpoint(der: bytes, trust: TrustStore, *, hub: str) -> tuple[Checkpoint, dt.datetime | None]:
    """A checkpoint signed by the hub owning `hub`, verified at its timestamp's time (so a
    later expiry of the hub's certificate does not undo it). Returns it and that time
    (None when it carries no timestamp)."""
    stamped_at: dt.datetime | None = None
    if signature_timestamp(der) is not None:
        stamped_at = verify_signature_timestamp(der, trust).gen_time
    verified = cms.verify(der, trust, role=CertRole.SERVER, at=stamped_at)
    if verified.attributes.get("docex_statement_type") != KIND.encode():
        raise PkiError("checkpoint_invalid", "not an audit checkpoint")
    if hub_prefix_of(verified.signer) != hub:
        raise PkiError("checkpoint_invalid", f"a checkpoint of {hub} signed by another hub")
    try:
        payload = json.loads(verified.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PkiError("checkpoint_invalid", "the checkpoint is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise PkiError("checkpoint_invalid", "the checkpoint is not a JSON object")
    cp = Checkpoint.from_payload(payload)
    if cp.hub != hub:
        raise PkiError("checkpoint_invalid", f"the checkpoint names hub {cp.hub}, not {hub}")
    return cp, stamped_at


