"""Delivery evidence (the model: ETSI EN 319 522 registered delivery evidences).

Every event of a document's life is a signed statement bound to the SHA-256 of the
envelope, timestamped by the TSA over its signature (unsigned attribute
signatureTimeStampToken). Two statements already travel the network and carry them, so
evidence extends them rather than adding a third:

    receipt  (signed by the recipient unit or one of its staff)
             delivered, opened, signed_for (签收, with the person), returned (退回, with the
             reason), refused (the recipient's agent could not open it, with the code)
    notice   (signed by a hub; evidence when it names the envelope digest)
             accepted / rejected (submission, the sender's hub), relayed (each hub on the
             way, the link crossed), paper_route, expired, recalled

The hub timestamps on behalf of agents (an agent's receipt arrives without a token; the
hub adds one before it records and forwards it, and sends the stamped copy back to the
recipient). :func:`read_evidence` verifies one evidence offline, at its timestamp's time.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from docex.pki import cms
from docex.pki.errors import PkiError
from docex.pki.names import CertRole, address_of, common_name, hub_prefix_of, role_of
from docex.pki.timestamps import TokenInfo, signature_timestamp, verify_signature_timestamp
from docex.pki.trust import TrustStore
from docex.protocols import notice as notice_mod
from docex.protocols import receipt as receipt_mod
from docex.protocols.errors import DocexError

# event -> (中文, English)
LABELS: dict[str, tuple[str, str]] = {
    "accepted": ("交换中心已接收", "submission accepted by the hub"),
    "rejected": ("交换中心已拒收", "submission refused by the hub"),
    "relayed": ("经交换中心转发", "relayed by a hub"),
    "delivered": ("已送达收文单位", "delivered to the recipient's terminal"),
    "opened": ("收文单位已打开", "opened at the recipient"),
    "signed_for": ("已签收", "accepted (signed for)"),
    "returned": ("已退回", "returned"),
    "refused": ("收文端无法接收", "refused by the recipient's terminal"),
    "expired": ("已过期未接收", "expired undelivered"),
    "paper_route": ("转纸质传递", "to be delivered on paper"),
    "recalled": ("已撤销", "recalled by the sender"),
}
EVIDENCE_NOTICE_EVENTS = frozenset({"accepted", "rejected", "relayed", "expired", "paper_route", "recalled"})


@dataclass(frozen=True)
class Evidence:
    kind: str  # receipt | notice
    event: str
    message_id: str
    envelope_sha256: str
    issuer: str  # the recipient unit's address, or the hub's prefix
    issuer_name: str  # the signer's common name (a unit, a person, a hub)
    claimed_at: str  # the time the statement itself states
    details: dict[str, Any] = field(default_factory=dict)  # person, reason, code, recipients, message
    timestamp: TokenInfo | None = None

    @property
    def at(self) -> dt.datetime | None:
        """The trusted time: the TSA's, never the signer's own claim."""
        return self.timestamp.gen_time if self.timestamp is not None else None

    def label(self) -> tuple[str, str]:
        return LABELS.get(self.event, (self.event, self.event))


def _payload(verified: cms.Verified) -> dict[str, Any]:
    try:
        payload = json.loads(verified.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DocexError("evidence_invalid", "the statement is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise DocexError("evidence_invalid", "the statement is not a JSON object")
    return payload


def peek(der: bytes) -> tuple[str, dict[str, Any]]:
    """(kind, payload) of a statement without verifying anything (for file names, sorting)."""
    try:
        info = cms._ContentInfo.load(der)
        content = cms._encap_bytes(info["content"]["encap_content_info"]["content"])
        kind = ""
        for attr in info["content"]["signer_infos"][0]["signed_attrs"]:
            if attr["type"].native == "docex_statement_type":
                kind = bytes(attr["values"][0].native).decode()
        payload = json.loads(content.decode("utf-8"))
        return kind, payload if isinstance(payload, dict) else {}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise DocexError("evidence_invalid", "not a signed statement") from exc


def read_evidence(der: bytes, trust: TrustStore, *, require_timestamp: bool = True) -> Evidence:
    """Verify one evidence offline: its timestamp (at the token's time), then its signature,
    the signer's chain and revocation as of that time, and what the statement says."""
    token: TokenInfo | None = None
    if signature_timestamp(der) is not None:
        token = verify_signature_timestamp(der, trust)
    elif require_timestamp:
        raise PkiError("timestamp_missing", "the evidence carries no timestamp")
    verified = cms.verify(der, trust, at=token.gen_time if token is not None else None)
    kind = verified.attributes.get("docex_statement_type", b"").decode(errors="replace")
    payload = _payload(verified)
    signer = verified.signer
    if kind == receipt_mod.KIND:
        if role_of(signer) not in (CertRole.SEAL, CertRole.PERSON):
            raise DocexError("wrong_certificate_role", "a receipt must be signed by a unit or its staff")
        try:
            receipt = receipt_mod.Receipt(**{k: str(v) for k, v in payload.items()}).validate()
        except TypeError as exc:
            raise DocexError("evidence_invalid", "the receipt's fields are not as expected") from exc
        if address_of(signer) != receipt.recipient:
            raise DocexError("sender_mismatch", f"a receipt for {receipt.recipient} signed by {address_of(signer)}")
        details: dict[str, Any] = {k: v for k, v in (("person", receipt.person), ("reason", receipt.reason),
                                     ("code", receipt.error)) if v}
        return Evidence(kind, receipt.event, receipt.message_id, receipt.envelope_sha256, receipt.recipient,
                        common_name(signer), receipt.at, details, token)
    if kind == notice_mod.KIND:
        if role_of(signer) is not CertRole.SERVER:
            raise DocexError("wrong_certificate_role", "a notice must be signed by a hub")
        notice = notice_mod.notice_from_payload(payload)
        if hub_prefix_of(signer) != notice.hub:
            raise DocexError("sender_mismatch", "a notice signed by another hub than it names")
        if not notice.envelope_sha256:
            raise DocexError("evidence_invalid", "the notice names no envelope: it is not evidence")
        details = {"code": notice.code, "message": notice.message}
        if notice.recipients:
            details["recipients"] = list(notice.recipients)
        return Evidence(kind, notice.event, notice.message_id, notice.envelope_sha256, notice.hub,
                        common_name(signer), notice.at, details, token)
    raise DocexError("evidence_invalid", f"a {kind or 'statement'} is not delivery evidence")


def is_evidence(der: bytes) -> bool:
    """A receipt, or a notice naming an envelope digest (others are courtesy messages)."""
    try:
        kind, payload = peek(der)
    except PkiError:
        return False
    return kind == receipt_mod.KIND or (kind == notice_mod.KIND and bool(payload.get("envelope_sha256")))


def signer_certificates(der: bytes) -> list[x509.Certificate]:
    """Every certificate a statement (and its timestamp token) carries."""
    out: list[x509.Certificate] = []
    for blob in (der, signature_timestamp(der)):
        if blob is None:
            continue
        info = cms._ContentInfo.load(blob)
        for c in info["content"]["certificates"] or []:
            if c.name == "certificate":
                out.append(x509.load_der_x509_certificate(c.chosen.dump()))
    return out
