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
EVENTS = ("rejected", "paper_route", "expired", "waiting_for_link", "reminder", "recalled", "dead_letter", "accepted",
          "relayed")


@dataclass(frozen=True)
class Notice:
    message_id: str
    event: str
    code: str
    message: str
    recipients: tuple[str, ...]  # whom it concerns; empty for the whole document
    hub: str
    at: str
    # The SHA-256 of the envelope it is about: a notice that names it is delivery evidence
    # (docex.protocols.evidence), bound to those very bytes.
    envelope_sha256: str = ""


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
    envelope_sha256: str = "",
) -> tuple[Notice, bytes]:
    if message_id:  # empty: a refusal of bytes too damaged to name a document
        check_message_id(message_id)
    notice = Notice(message_id, event, code, message, tuple(recipients), hub, utcnow_iso(), envelope_sha256)
    payload = asdict(notice)
    payload["recipients"] = list(notice.recipients)
    if not envelope_sha256:
        del payload["envelope_sha256"]
    return notice, sign_statement(KIND, payload, cert, key)


def notice_from_payload(p: dict[str, object]) -> Notice:
    try:
        recipients = p.get("recipients", ())
        return Notice(
            str(p["message_id"]), str(p["event"]), str(p["code"]), str(p["message"]),
            tuple(str(r) for r in recipients) if isinstance(recipients, list | tuple) else (),
            str(p["hub"]), str(p["at"]), str(p.get("envelope_sha256", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DocexError("malformed_envelope", "the notice lacks a field") from exc


def verify_notice(der: bytes, trust: TrustStore) -> Notice:
    statement = verify_statement(der, trust, kind=KIND, roles=(CertRole.SERVER,), error_code="malformed_envelope")
    notice = notice_from_payload(statement.payload)
    if notice.message_id:
        check_message_id(notice.message_id)
    if hub_prefix_of(statement.signer) != notice.hub:
        raise DocexError("sender_mismatch", "a notice signed by another hub than it names")
    return notice
