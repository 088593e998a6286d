"""Refusing input: nothing refused is dropped silently. The bytes are kept for
inspection, the refusal is recorded and audited, counted, and the sender gets a signed
notice with the code."""

from __future__ import annotations

import hashlib
import logging

from docex.broker import ConfirmedPublisher, Delivery, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE
from docex.hub import audit
from docex.hub.context import HubContext, Origin
from docex.hub.models import Rejection
from docex.protocols import localtime, messages
from docex.protocols.errors import describe
from docex.protocols.identifiers import is_message_id
from docex.protocols.notice import make_notice
from docex.protocols.safepath import inside

log = logging.getLogger(__name__)


def keep_bytes(ctx: HubContext, body: bytes) -> str:
    day = localtime.today().isoformat()
    folder = ctx.config.refused_dir / day
    folder.mkdir(parents=True, exist_ok=True)
    path = inside(folder, f"{hashlib.sha256(body).hexdigest()}.bin")
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(body)
        tmp.replace(path)
    return str(path)


def refuse(
    ctx: HubContext,
    delivery: Delivery,
    origin: Origin | None,
    code: str,
    message: str,
    *,
    message_id: str = "",
    sender: str = "",
    publisher: ConfirmedPublisher | None = None,
) -> None:
    """Record a refusal and tell whoever published it (when RabbitMQ vouches for them)."""
    kept = keep_bytes(ctx, delivery.body)
    # The record keeps whatever the publisher called it (bound as data, cut to the column);
    # the signed notice names a document only by an id of a UUID's form.
    msg_id = (message_id or delivery.message_id or "")[:128]
    notice_id = next((v for v in (message_id, delivery.message_id or "") if is_message_id(v)), "")
    who = sender or (origin.name if origin else "")
    with ctx.db.session() as s:
        s.add(Rejection(message_id=msg_id, sender=who, code=code, message=message, kept_at=kept))
        audit.append(s, "hub", "document.reject", msg_id, code=code, message=message, sender=who,
                     user=delivery.user_id or "", kept_at=kept)
    ctx.observer.document_rejected(code)
    log.warning("refused %s from %s: [%s] %s", msg_id or "(no id)", who or delivery.user_id, code, message)
    if origin is None or publisher is None:
        return
    routing_key = origin.name if origin.kind == "unit" else f"link.{origin.name}"
    _, der = make_notice(
        message_id=notice_id, event="rejected", code=code, message=f"{describe(code)}: {message}",
        recipients=(), hub=ctx.config.prefix, cert=ctx.identity.cert, key=ctx.identity.key,
    )
    try:
        publisher.publish_many([PublishItem(
            DELIVER_EXCHANGE, routing_key, der, messages.notice_key(notice_id or msg_id, "rejected", code),
            headers={messages.H_RECIPIENT: who}, type=messages.NOTICE,
        )])
    except Exception as exc:  # noqa: BLE001 - the refusal is recorded; the notice is a courtesy
        log.warning("could not send the rejection notice for %s: %s", msg_id, exc)
