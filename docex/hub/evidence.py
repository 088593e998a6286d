"""Delivery evidence at the hub (docex.protocols.evidence): the hub issues the events it
witnesses as signed notices naming the envelope digest, timestamps them with its TSA,
keeps them, and timestamps the recipients' receipts on their agents' behalf. The bundle a
third party checks offline is exported from here or from an agent (`docex evidence export`).

    accepted     the sender's hub took the submission
    rejected     a hub refused it (the digest of the bytes it refused)
    relayed      a hub passed it on over a link, or received it over one
    paper_route, expired, recalled    as the delivery states of the same names"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from docex.hub.content_store import envelope_of
from docex.hub.context import HubContext
from docex.hub.models import AuditEntry, Document, EvidenceRecord, Receipt
from docex.pki.errors import PkiError
from docex.pki.timestamps import Stamper, add_signature_timestamp
from docex.protocols.evidence import is_evidence
from docex.protocols.notice import make_notice

log = logging.getLogger(__name__)


def stamp(ctx: HubContext, der: bytes) -> bytes:
    """`der` with a timestamp over its signature from the hub's TSA (unchanged when it
    has one, or when the hub has no TSA or it fails: the evidence stays signed)."""
    if ctx.stamper is None:
        return der
    try:
        return add_signature_timestamp(der, ctx.stamper)
    except PkiError as exc:
        log.warning("no timestamp for an evidence: [%s] %s", exc.code, exc.message)
        return der


def keep(s: Session, *, message_id: str, event: str, issuer: str, der: bytes) -> None:
    digest = hashlib.sha256(der).hexdigest()
    if s.execute(select(EvidenceRecord.id).where(EvidenceRecord.digest == digest)).first() is None:
        s.add(EvidenceRecord(message_id=message_id, event=event, issuer=issuer, digest=digest, der=der))


def prepare(ctx: HubContext, *, message_id: str, event: str, envelope_sha256: str, code: str = "",
            message: str = "", recipients: Sequence[str] = ()) -> bytes:
    """A signed, timestamped notice naming the envelope: evidence of `event`. Made before
    a transaction where it can be (signing and timestamping need no database lock)."""
    _, der = make_notice(message_id=message_id, event=event, code=code or event, message=message,
                         recipients=tuple(recipients), hub=ctx.config.prefix, cert=ctx.identity.cert,
                         key=ctx.identity.key, envelope_sha256=envelope_sha256)
    return stamp(ctx, der)


def issue(ctx: HubContext, s: Session, *, message_id: str, event: str, envelope_sha256: str, code: str = "",
          message: str = "", recipients: Sequence[str] = ()) -> bytes:
    """`prepare`, kept here in the caller's transaction; returned for sending to the sender."""
    der = prepare(ctx, message_id=message_id, event=event, envelope_sha256=envelope_sha256, code=code,
                  message=message, recipients=recipients)
    keep(s, message_id=message_id, event=event, issuer=ctx.config.prefix, der=der)
    return der


# -- export ---------------------------------------------------------------------------------------
def statements(s: Session, message_id: str) -> list[bytes]:
    """Every evidence this hub holds about a document: what it issued or received from
    other hubs, and every receipt."""
    issued = list(s.execute(select(EvidenceRecord.der).where(EvidenceRecord.message_id == message_id)).scalars())
    receipts = list(s.execute(select(Receipt.der).where(Receipt.message_id == message_id)).scalars())
    return [d for d in [*issued, *receipts] if is_evidence(d)]


def audit_segment(s: Session, message_id: str, last_id: int) -> list[dict[str, object]]:
    """The audit entries from the document's first up to `last_id` (a checkpoint's head),
    as hashed: a verifier recomputes each and the links between them."""
    first = s.execute(select(AuditEntry.id).where(AuditEntry.subject == message_id).order_by(AuditEntry.id)
                      .limit(1)).scalar_one_or_none()
    if first is None:
        return []
    from docex.protocols.checkpoint import _canonical_time

    rows = s.execute(select(AuditEntry).where(AuditEntry.id >= first, AuditEntry.id <= last_id)
                     .order_by(AuditEntry.id)).scalars()
    return [{"id": r.id, "at": _canonical_time(r.at), "actor": r.actor, "action": r.action, "subject": r.subject,
             "detail": r.detail, "prev_hash": r.prev_hash, "hash": r.hash} for r in rows]


def export(ctx: HubContext, message_id: str, stamper: Stamper) -> bytes:
    """The evidence bundle of one document as this hub knows it, covered by a checkpoint
    (a fresh one when none covers the document's last entry yet)."""
    from docex.hub import checkpoints
    from docex.protocols.bundle import BundleParts, build
    from docex.protocols.errors import DocexError

    with ctx.db.read() as s:
        doc = s.get(Document, message_id)
        if doc is None:
            raise DocexError("unknown_document", f"no document {message_id} at this hub")
        if doc.content_purged_at is not None:
            raise DocexError("content_purged", f"the envelope of {message_id} was removed by the retention policy "
                                               "(its evidence and audit entries remain)")
        envelope_bytes = envelope_of(s, ctx.content, message_id)
        if envelope_bytes is None:
            raise DocexError("content_missing", f"the envelope of {message_id} is not in the content store")
        evidences = statements(s, message_id)
        last_mine = s.execute(select(AuditEntry.id).where(AuditEntry.subject == message_id)
                              .order_by(AuditEntry.id.desc()).limit(1)).scalar_one_or_none() or 0
    cp_der = checkpoints.covering(ctx.config, last_mine)
    if cp_der is None:
        checkpoints.make(ctx.config, ctx.db, ctx.identity.cert, ctx.identity.key, ctx.stamper,
                         f"evidence export {message_id}")
        cp_der = checkpoints.covering(ctx.config, last_mine)
    assert cp_der is not None
    from docex.protocols.checkpoint import unverified_payload

    head_id = int(unverified_payload(cp_der)["last_id"])
    with ctx.db.read() as s:
        entries = audit_segment(s, message_id, head_id)
    trust = ctx.identity.trust
    parts = BundleParts(message_id=message_id, envelope=envelope_bytes, evidences=evidences,
                        exported_by=ctx.config.prefix, certificates=[ctx.identity.cert],
                        crls=list(trust.crls), audit_entries=entries, checkpoint=cp_der)
    log.info("evidence bundle of %s: %d evidence(s), %d audit entries", message_id, len(evidences), len(entries))
    return build(parts, stamper)



def renewal_inputs(ctx: HubContext, passphrase: bytes | None, *, now: dt.datetime | None = None) -> tuple[list[x509.Certificate],
                                                                         list[x509.CertificateRevocationList],
                                                                         list[x509.Certificate]]:
    """What the hub brings to an evidence renewal (`docex.protocols.bundle.renew`): its
    trust anchors, the CRLs it holds (a freshly issued one of its own CA when its key is
    here, so a renewal never waits for the 6-hourly publication) and its CA certificate."""
    from docex.pki.ca import CertificateAuthority

    trust = ctx.identity.trust
    crls = list(trust.crls)
    try:
        crls.append(CertificateAuthority.open(ctx.config.ca_dir, passphrase).crl(now=now))
    except (PkiError, OSError, ValueError, TypeError) as exc:  # an imported CA may have no key here
        log.info("renewal uses the published CRL of the hub's CA: %s", exc)
    return list(trust.anchors), crls, [ctx.identity.ca_cert]
