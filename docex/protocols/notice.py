"""Hub notices to a sender: an envelope was rejected (with its code), must go on paper,
or expired. Signed by the hub's own certificate so the sender can trust the word."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cryptography import x509

from docex.pki.keys import PrivateKey
from docex.pki.names import CertRole, hub_prefix_of
from docex.pki.trust import TrustStore
from docex.protocols.errors import DocexError
from docex.protocols.identifiers import check_message_id
from docex.protocols.manifest import utcnow_iso
from docex.protocols.statement import sign_statement, verify_statement

KIND = "notice"
EVENTS = ("rejected", "paper_route", "expired", "waiting_for_link", "reminder", "recalled", "dead_letter")


@dataclass(frozen=True)
class Notice:
    message_id: str
    event: str
    code: str
    message: str
    recipients: tuple[str, ...]  # whom it concerns; empty for the whole document
    hub: str
    at: str


def make_notice(
    *,
    message_id: str,
    event: str,
    code: str,
    message: str,
    recipients: tuple[str, ...],
    hub: str,
    cert: x509.Certificate,
    key: PrivateKey,
) -> tuple[Notice, bytes]:
    if message_id:  # empty: a refusal of bytes too damaged to name a document
        check_message_id(message_id)
    notice = Notice(message_id, event, code, message, tuple(recipients), hub, utcnow_iso())
    payload = asdict(notice)
    payload["recipients"] = list(notice.recipients)
    return notice, sign_statement(KIND, payload, cert, key)


def verify_notice(der: bytes, trust: TrustStore) -> Notice:
    statement = verify_statement(der, trust, kind=KIND, roles=(CertRole.SERVER,), error_code="malformed_envelope")
    p = statement.payload
    try:
        notice = Notice(
            str(p["message_id"]), str(p["event"]), str(p["code"]), str(p["message"]),
            tuple(str(r) for r in p.get("recipients", ())), str(p["hub"]), str(p["at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DocexError("malformed_envelope", "the notice lacks a field") from exc
    if notice.message_id:
        check_message_id(notice.message_id)
    if hub_prefix_of(statement.signer) != notice.hub:
        raise DocexError("sender_mismatch", "a notice signed by another hub than it names")
    return notice
