"""Receipts: the recipient's signed statement that it received (delivered), signed for
(signed_for) or returned (returned, with a reason) a document, naming the SHA-256 of the
envelope it received. They travel back end to end: non-repudiation of receipt."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from cryptography import x509

from docex.pki.keys import PrivateKey
from docex.pki.names import CertRole, address_of
from docex.pki.trust import TrustStore
from docex.protocols.errors import DocexError
from docex.protocols.identifiers import check_message_id
from docex.protocols.manifest import utcnow_iso
from docex.protocols.statement import sign_statement, verify_statement

# "refused": the recipient's agent could not accept it (quarantined), with the error code.
# "opened": a person of the recipient unit opened it (evidence only; the state stays).
EVENTS = ("delivered", "signed_for", "returned", "refused", "opened")
KIND = "receipt"


@dataclass(frozen=True)
class Receipt:
    message_id: str
    recipient: str
    event: str
    envelope_sha256: str
    at: str
    reason: str = ""
    person: str = ""  # the staff member who signed for or returned it, if any
    error: str = ""  # for event "delivered" refused by the agent: the error code

    def validate(self) -> Receipt:
        check_message_id(self.message_id)
        if self.event not in EVENTS:
            raise DocexError("receipt_invalid", f"unknown receipt event {self.event!r}")
        if self.event == "returned" and not self.reason.strip():
            raise DocexError("receipt_invalid", "a returned document needs a reason (退回理由)")
        if self.event == "refused" and not self.error:
            raise DocexError("receipt_invalid", "a refusal names its error code")
        return self


def envelope_digest(envelope: bytes) -> str:
    return hashlib.sha256(envelope).hexdigest()


def make_receipt(
    *,
    message_id: str,
    recipient: str,
    event: str,
    envelope_sha256: str,
    cert: x509.Certificate,
    key: PrivateKey,
    reason: str = "",
    person: str = "",
    error: str = "",
) -> tuple[Receipt, bytes]:
    receipt = Receipt(message_id, recipient, event, envelope_sha256, utcnow_iso(), reason, person, error).validate()
    return receipt, sign_statement(KIND, asdict(receipt), cert, key)


def verify_receipt(der: bytes, trust: TrustStore) -> tuple[Receipt, x509.Certificate]:
    """A receipt counts only if signed by the recipient unit (seal) or one of its staff."""
    statement = verify_statement(
        der, trust, kind=KIND, roles=(CertRole.SEAL, CertRole.PERSON), error_code="receipt_invalid"
    )
    try:
        receipt = Receipt(**{k: str(v) for k, v in statement.payload.items()}).validate()
    except TypeError as exc:
        raise DocexError("receipt_invalid", "the receipt's fields are not as expected") from exc
    if address_of(statement.signer) != receipt.recipient:
        raise DocexError("sender_mismatch", f"a receipt for {receipt.recipient} signed by {address_of(statement.signer)}")
    return receipt, statement.signer
