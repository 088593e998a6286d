"""What staff do with a received document: sign for it (签收) or return it (退回) with a
reason. Each makes a signed receipt in the outbox; the service sends it."""

from __future__ import annotations

from pathlib import Path

from docex.agent.context import AgentContext
from docex.agent.store import Outgoing, Received
from docex.pki.credentials import PersonCredentials
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.receipt import make_receipt


def _record(ctx: AgentContext, message_id: str, event: str, *, reason: str = "", person_dir: str | Path | None = None,
            passphrase: bytes | None = None) -> None:
    cert, key, person = ctx.creds.sign_cert, ctx.creds.sign_key, ""
    if person_dir is not None:
        staff = PersonCredentials.load(person_dir, passphrase)
        if staff.address != ctx.creds.address:
            raise DocexError("sender_mismatch", f"{staff.name} works for {staff.address}, not {ctx.creds.address}")
        cert, key, person = staff.cert, staff.key, staff.name
    with ctx.store.session() as s:
        doc = s.get(Received, message_id)
        if doc is None:
            raise DocexError("unknown_document", f"no received document {message_id} in this inbox")
        if doc.state in ("signed_for", "returned"):
            raise DocexError("already_done", f"{message_id} was already {'signed for' if doc.state == 'signed_for' else 'returned'}")
        _, der = make_receipt(message_id=message_id, recipient=ctx.creds.address, event=event,
                              envelope_sha256=doc.envelope_sha256, cert=cert, key=key, reason=reason, person=person)
        doc.state = event
        doc.person = person
        doc.reason = reason
        s.add(Outgoing(kind=messages.RECEIPT, message_id=messages.receipt_key(message_id, ctx.creds.address, event), body=der))


def sign_for(ctx: AgentContext, message_id: str, *, person_dir: str | Path | None = None,
             passphrase: bytes | None = None) -> None:
    _record(ctx, message_id, "signed_for", person_dir=person_dir, passphrase=passphrase)


def return_document(ctx: AgentContext, message_id: str, reason: str, *, person_dir: str | Path | None = None,
                    passphrase: bytes | None = None) -> None:
    if not reason.strip():
        raise DocexError("receipt_invalid", "a returned document needs a reason (退回理由)")
    _record(ctx, message_id, "returned", reason=reason, person_dir=person_dir, passphrase=passphrase)
