"""Delivery evidence at a unit (docex.protocols.evidence): every receipt the unit sent or
received is kept as it was (the `delivered` receipt is not replaced by the `signed_for`
one; the hub's timestamped copy of our own receipt is kept beside the original), every
notice the hub sent is kept (store.Notice), and the envelope with its inner signed
package. `docex evidence export --home AGENTDIR` bundles them for a third party."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from docex.agent.context import AgentContext
from docex.agent.store import EvidenceRow, KeptEnvelope, Outgoing, Received, Sent
from docex.agent.store import Notice as NoticeRow
from docex.pki.credentials import PersonCredentials
from docex.pki.timestamps import Stamper
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.evidence import is_evidence
from docex.protocols.receipt import make_receipt

log = logging.getLogger(__name__)


def keep(s: Session, *, message_id: str, event: str, issuer: str, direction: str, der: bytes) -> None:
    """Keep one signed statement (once: a redelivered copy is the same bytes)."""
    digest = hashlib.sha256(der).hexdigest()
    if s.execute(select(EvidenceRow.id).where(EvidenceRow.digest == digest)).first() is None:
        s.add(EvidenceRow(message_id=message_id, event=event, issuer=issuer, direction=direction, digest=digest,
                          der=der))


def keep_envelope(s: Session, *, message_id: str, role: str, envelope: bytes, inner: bytes | None) -> None:
    if s.get(KeptEnvelope, message_id) is None:
        s.add(KeptEnvelope(message_id=message_id, role=role, envelope=envelope, inner=inner))


def record_opened(ctx: AgentContext, message_id: str, *, person_dir: str | Path | None = None,
                  passphrase: bytes | None = None, staff: PersonCredentials | None = None) -> bool:
    """Evidence that a person of this unit opened a received document (the first time
    only): a signed `opened` receipt, kept and sent like the others, signed with the
    person's own certificate when there is one (`staff`, or loaded from `person_dir`).
    Returns whether one was made now."""
    cert, key, person = ctx.creds.sign_cert, ctx.creds.sign_key, ""
    if staff is None and person_dir is not None:
        staff = PersonCredentials.load(person_dir, passphrase)
    if staff is not None:
        if staff.address != ctx.creds.address:
            raise DocexError("sender_mismatch", f"{staff.name} works for {staff.address}, not {ctx.creds.address}")
        cert, key, person = staff.cert, staff.key, staff.name
    outgoing_key = messages.receipt_key(message_id, ctx.creds.address, "opened")
    with ctx.store.session() as s:
        doc = s.get(Received, message_id)
        if doc is None:
            raise DocexError("unknown_document", f"no received document {message_id} in this inbox")
        if s.execute(select(Outgoing.id).where(Outgoing.message_id == outgoing_key)).first() is not None:
            return False
        _, der = make_receipt(message_id=message_id, recipient=ctx.creds.address, event="opened",
                              envelope_sha256=doc.envelope_sha256, cert=cert, key=key, person=person)
        s.add(Outgoing(kind=messages.RECEIPT, message_id=outgoing_key, body=der))
        keep(s, message_id=message_id, event="opened", issuer=ctx.creds.address, direction="sent", der=der)
    return True


def statements(s: Session, message_id: str) -> list[bytes]:
    rows = list(s.execute(select(EvidenceRow.der).where(EvidenceRow.message_id == message_id)).scalars())
    notices = list(s.execute(select(NoticeRow.der).where(NoticeRow.message_id == message_id)).scalars())
    return [d for d in [*rows, *notices] if is_evidence(d)]


def export(ctx: AgentContext, message_id: str, stamper: Stamper) -> bytes:
    """The evidence bundle of a document this unit sent or received."""
    from docex.protocols.bundle import BundleParts, build

    with ctx.store.session() as s:
        kept = s.get(KeptEnvelope, message_id)
        envelope, inner = (kept.envelope, kept.inner) if kept is not None else (None, None)
        if envelope is None and s.get(Sent, message_id) is not None:  # sent before envelopes were kept
            row = s.execute(select(Outgoing.body).where(Outgoing.message_id == message_id,
                                                        Outgoing.kind == messages.DOCUMENT)).scalar_one_or_none()
            envelope = row
        evidences = statements(s, message_id)
    if envelope is None:
        raise DocexError("unknown_document", f"no document {message_id} sent or received by this unit")
    parts = BundleParts(message_id=message_id, envelope=envelope, inner=inner, evidences=evidences,
                        exported_by=ctx.creds.address, certificates=[ctx.creds.sign_cert],
                        crls=list(ctx.trust.crls))
    log.info("evidence bundle of %s: %d evidence(s)", message_id, len(evidences))
    return build(parts, stamper)
