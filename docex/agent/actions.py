"""What staff do with a received document: sign for it (签收) or return it (退回) with a
reason. Each makes a signed receipt in the outbox; the service sends it. Signed with the
person's own certificate when a person acts (desk login, `--person`), else the unit's."""

from __future__ import annotations

from pathlib import Path

from docex.agent.context import AgentContext
from docex.agent.evidence import keep
from docex.agent.store import Action, Outgoing, Received
from docex.pki.credentials import PersonCredentials
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.receipt import make_receipt


def staff_of(ctx: AgentContext, person_dir: str | Path | None, passphrase: bytes | None) -> PersonCredentials | None:
    if person_dir is None:
        return None
    staff = PersonCredentials.load(person_dir, passphrase)
    if staff.address != ctx.creds.address:
        raise DocexError("sender_mismatch", f"{staff.name} works for {staff.address}, not {ctx.creds.address}")
    return staff


def _record(ctx: AgentContext, message_id: str, event: str, *, reason: str = "", staff: PersonCredentials | None,
            actor: str = "") -> None:
    cert, key, person = ctx.creds.sign_cert, ctx.creds.sign_key, ""
    if staff is not None:
        cert, key, person = staff.cert, staff.key, staff.name
    with ctx.store.session() as s:
        doc = s.get(Received, message_id)
        if doc is None:
            raise DocexError("unknown_document", f"no received document {message_id} in this inbox")
        if doc.state in ("signed_for", "returned"):
            raise DocexError("already_done", f"{message_id} was already {'signed for' if doc.state == 'signed_for' else 'returned'}")
        if doc.state == "recalled":
            raise DocexError("recalled", f"{message_id} was recalled by its sender")
        _, der = make_receipt(message_id=message_id, recipient=ctx.creds.address, event=event,
                              envelope_sha256=doc.envelope_sha256, cert=cert, key=key, reason=reason, person=person)
        doc.state = event
        doc.person = person
        doc.reason = reason
        s.add(Outgoing(kind=messages.RECEIPT, message_id=messages.receipt_key(message_id, ctx.creds.address, event), body=der))
        keep(s, message_id=message_id, event=event, issuer=ctx.creds.address, direction="sent", der=der)
        s.add(Action(actor=actor or person or ctx.creds.name, serial=f"{cert.serial_number:x}", action=event,
                     message_id=message_id, detail=reason))


def sign_for(ctx: AgentContext, message_id: str, *, person_dir: str | Path | None = None,
             passphrase: bytes | None = None, staff: PersonCredentials | None = None, actor: str = "") -> None:
    _record(ctx, message_id, "signed_for", staff=staff or staff_of(ctx, person_dir, passphrase), actor=actor)


def return_document(ctx: AgentContext, message_id: str, reason: str, *, person_dir: str | Path | None = None,
                    passphrase: bytes | None = None, staff: PersonCredentials | None = None, actor: str = "") -> None:
    if not reason.strip():
        raise DocexError("receipt_invalid", "a returned document needs a reason (退回理由)")
    _record(ctx, message_id, "returned", reason=reason, staff=staff or staff_of(ctx, person_dir, passphrase), actor=actor)
