"""Recall (撤销): the sender's signed statement that it withdraws a document not yet
signed for, with a reason. Signed by the sending unit's seal or one of its staff, so every
hub on the way and every recipient verifies the sender's own word, like a receipt."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cryptography import x509

from docex.pki.keys import PrivateKey
from docex.pki.names import CertRole, address_of
from docex.pki.trust import TrustStore
from docex.protocols.errors import DocexError
from docex.protocols.identifiers import check_message_id
from docex.protocols.manifest import utcnow_iso
from docex.protocols.statement import sign_statement, verify_statement

KIND = "recall"
MAX_REASON = 500


@dataclass(frozen=True)
class Recall:
    message_id: str
    sender: str
    reason: str
    at: str
    person: str = ""  # the staff member who recalled it, if any

    def validate(self) -> Recall:
        if not self.message_id or len(self.message_id) > 64:
            raise DocexError("recall_invalid", "a recall names the message id of the document")
        check_message_id(self.message_id)
        if not self.reason.strip():
            raise DocexError("recall_invalid", "a recall needs a reason (撤销理由)")
        if len(self.reason) > MAX_REASON:
            raise DocexError("recall_invalid", f"the reason is longer than {MAX_REASON} characters")
        return self


def make_recall(*, message_id: str, sender: str, reason: str, cert: x509.Certificate, key: PrivateKey,
                person: str = "") -> tuple[Recall, bytes]:
    recall = Recall(message_id, sender, reason.strip(), utcnow_iso(), person).validate()
    return recall, sign_statement(KIND, asdict(recall), cert, key)


def verify_recall(der: bytes, trust: TrustStore) -> tuple[Recall, x509.Certificate]:
    """A recall counts only if signed by the sending unit (seal) or one of its staff."""
    statement = verify_statement(der, trust, kind=KIND, roles=(CertRole.SEAL, CertRole.PERSON),
                                 error_code="recall_invalid")
    try:
        recall = Recall(**{k: str(v) for k, v in statement.payload.items()}).validate()
    except TypeError as exc:
        raise DocexError("recall_invalid", "the recall's fields are not as expected") from exc
    if address_of(statement.signer) != recall.sender:
        raise DocexError("sender_mismatch", f"a recall for {recall.sender} signed by {address_of(statement.signer)}")
    return recall, statement.signer
