"""Recall (撤销) at the agent.

Sender: a document not yet signed for by every recipient is recalled with a reason; the
signed recall goes into the outbox with the local record, in one transaction, and is
idempotent on the message id. The hub answers with a signed `recalled` notice naming the
recipients that had already signed for it (they keep it).

Recipient: the sender's signed recall (verified end to end) takes the document out of the
inbox (its folder moves to AGENTDIR/recalled/) unless it was already signed for, and the
recall is recorded either way. A recall that overtakes its document is kept and applied
when the document arrives."""

from __future__ import annotations

import logging
import shutil

from sqlalchemy import select

from docex.agent.context import AgentContext
from docex.agent.store import (
    Action,
    Outgoing,
    Recall,
    Received,
    Sent,
    SentEvent,
    SentRecipient,
    utcnow,
)
from docex.pki.credentials import PersonCredentials
from docex.pki.errors import PkiError
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.logsafe import loggable
from docex.protocols.notice import Notice
from docex.protocols.recall import make_recall, verify_recall
from docex.protocols.safepath import inside

log = logging.getLogger(__name__)
OPEN = ("queued", "sent", "routed", "waiting_for_link", "delivered")


def recall_document(ctx: AgentContext, message_id: str, reason: str, *, staff: PersonCredentials | None = None,
                    actor: str = "") -> bool:
    """Queue the recall of a document we sent. True if new, False if it was already recalled."""
    cert, key, person = ctx.creds.sign_cert, ctx.creds.sign_key, ""
    if staff is not None:
        cert, key, person = staff.cert, staff.key, staff.name
    with ctx.store.session() as s:
        sent = s.get(Sent, message_id)
        if sent is None:
            raise DocexError("unknown_document", f"no sent document {message_id}")
        if s.execute(select(Recall.id).where(Recall.message_id == message_id, Recall.direction == "out")).first():
            return False
        rows = list(s.execute(select(SentRecipient).where(SentRecipient.message_id == message_id)).scalars())
        if not any(r.state in OPEN for r in rows):
            raise DocexError("already_done", f"{message_id}: every recipient has signed for, returned or refused it")
        _, der = make_recall(message_id=message_id, sender=ctx.creds.address, reason=reason, cert=cert, key=key,
                             person=person)
        s.add(Recall(message_id=message_id, direction="out", sender=ctx.creds.address, reason=reason.strip(),
                     person=person, der=der))
        s.add(Outgoing(kind=messages.RECALL, message_id=f"{message_id}|recall", body=der))
        s.add(Action(actor=actor or person or ctx.creds.name, serial=f"{cert.serial_number:x}", action="recall",
                     message_id=message_id, detail=reason))
        sent.state = "recalling"
    log.info("recall of %s queued: %s", message_id, reason)
    return True


def _take_out(ctx: AgentContext, doc: Received) -> None:
    """Move the document's folder out of the inbox (kept, as everything is)."""
    source = inside(ctx.config.inbox, doc.message_id)
    target = inside(ctx.config.home / "recalled", doc.message_id)
    if source.exists():
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(source), str(target))
    doc.path = str(target)


def apply_recall(ctx: AgentContext, body: bytes) -> None:
    """The sender's recall of a document addressed to us."""
    try:
        recall, _ = verify_recall(body, ctx.trust)
    except PkiError as exc:
        log.warning("ignored an invalid recall: [%s] %s", exc.code, loggable(exc.message, 500))
        return
    with ctx.store.session() as s:
        if s.execute(select(Recall.id).where(Recall.message_id == recall.message_id, Recall.direction == "in")).first():
            return  # a redelivery
        doc = s.get(Received, recall.message_id)
        if doc is not None and doc.sender != recall.sender:
            log.warning("ignored a recall of %s by %s, who did not send it", loggable(recall.message_id),
                        loggable(recall.sender))
            return
        outcome = "pending"
        if doc is not None:
            if doc.state == "delivered":
                _take_out(ctx, doc)
                doc.state, doc.reason, outcome = "recalled", recall.reason, "recalled"
            else:
                outcome = "kept"  # signed for (or returned) before the recall came: it stays
        s.add(Recall(message_id=recall.message_id, direction="in", sender=recall.sender, reason=recall.reason,
                     person=recall.person, outcome=outcome, der=body))
    log.info("recall of %s by %s: %s", loggable(recall.message_id), loggable(recall.sender), outcome)


def recall_waiting(ctx: AgentContext, message_id: str) -> bool:
    """Whether a recall overtook this document (called when it arrives; applies it)."""
    with ctx.store.session() as s:
        row = s.execute(select(Recall).where(Recall.message_id == message_id, Recall.direction == "in",
                                             Recall.outcome == "pending")).scalar_one_or_none()
        doc = s.get(Received, message_id)
        if row is None or doc is None or doc.sender != row.sender:
            return False
        _take_out(ctx, doc)
        doc.state, doc.reason, row.outcome = "recalled", row.reason, "recalled"
    return True


def recalled_notice(ctx: AgentContext, notice: Notice) -> None:
    """The hub's answer to our recall: every open recipient is recalled; those it names
    had signed for it and keep it. (Called inside the notice's own bookkeeping.)"""
    now = utcnow()
    with ctx.store.session() as s:
        sent = s.get(Sent, notice.message_id)
        if sent is None:
            return
        sent.state = "recalled"
        for row in s.execute(select(SentRecipient).where(SentRecipient.message_id == notice.message_id)).scalars():
            if row.recipient in notice.recipients or row.state not in OPEN:
                continue
            row.state, row.at, row.code = "recalled", now, "recalled"
            if not s.execute(select(SentEvent.id).where(SentEvent.message_id == row.message_id,
                                                        SentEvent.recipient == row.recipient,
                                                        SentEvent.event == "recalled")).first():
                s.add(SentEvent(message_id=row.message_id, recipient=row.recipient, event="recalled", at=now))
