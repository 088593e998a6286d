"""Dead letters: messages a consumer failed on `delivery_limit` times (or refused outright).
Never silent: the bytes and where they came from are kept, the delivery is marked
`dead_letter`, the sender is told with a signed notice (code `dead_letter`), the audit log
and the metrics count them, and the information centre puts them back with
`docex hub dead-letters replay` once the cause is fixed.

Outages (database, disk) never get here: consumers hold the delivery and pause instead
(`docex.broker.outage`), and this consumer does the same, so `hub.dead` cannot spin.
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from docex.broker import ConfirmedPublisher, Delivery, PublishItem
from docex.broker.topology import INGRESS_EXCHANGE, ingress_routing_key
from docex.hub import audit, outbox, states
from docex.hub.broker import address_of_user, hub_user
from docex.hub.config import HubConfig
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.models import Delivery as DeliveryRow
from docex.hub.models import Document, Rejection, Unit
from docex.hub.refusals import keep_bytes
from docex.protocols import localtime, messages
from docex.protocols.errors import describe
from docex.protocols.logsafe import loggable
from docex.protocols.notice import make_notice

log = logging.getLogger(__name__)

CODE = "dead_letter"
REPLAYED = "dead_letter_replayed"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as the information centre sees it."""

    id: int
    message_id: str
    kind: str  # document | receipt | notice | ...
    queue: str  # where it died: hub.ingress, unit.<address>, link.<name>
    recipient: str  # for a copy to a unit: that unit
    sender: str  # the broker login that published it
    reason: str
    at: str
    replayed: bool
    kept: bool
    tries: int | None = None  # deliveries tried before it died (unknown for older records)

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _record_path(config: HubConfig, rejection_id: int) -> Path:
    return config.refused_dir / "dead-letters" / f"{int(rejection_id)}.json"


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death") or []
    return dict(deaths[0]) if deaths and isinstance(deaths[0], dict) else {}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _tries(headers: dict[str, Any], death: dict[str, Any], limit: int) -> int:
    """How many deliveries were tried before it died. Quorum queues count the earlier ones
    in `x-delivery-count`; a message refused outright (RejectMessage) was tried once."""
    try:
        earlier = int(headers.get("x-delivery-count") or 0)
    except (TypeError, ValueError):
        earlier = 0
    if earlier:
        return earlier + 1
    return limit + 1 if _text(death.get("reason")) == "delivery_limit" else 1


class DeadLetters:
    """The handler of `hub.dead`: keep, record, mark, tell; then acknowledge."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    def __call__(self, delivery: Delivery) -> None:
        headers = dict(delivery.headers or {})
        death = _first_death(headers)
        queue = _text(death.get("queue"))
        keys = [_text(k) for k in death.get("routing-keys") or []]
        kind = delivery.properties.type or ""
        # Only copies the hub itself routed (unit and link queues) name a recipient it can trust;
        # what died in the ingress carries whatever headers its publisher chose.
        recipient = ""
        if queue.startswith(("unit.", "link.")):
            recipient = _text(headers.get(messages.H_RECIPIENT)) or (queue[5:] if queue.startswith("unit.") else "")
        reason = f"{queue or '?'}: {_text(death.get('reason')) or 'dead-lettered'}"
        message_id = delivery.message_id or ""
        kept = keep_bytes(self.ctx, delivery.body)
        owed: list[str] = []
        with self.ctx.db.session() as s:
            row = Rejection(message_id=message_id, sender=delivery.user_id or "", code=CODE, message=reason,
                            kept_at=kept)
            s.add(row)
            s.flush()
            record = {
                "queue": queue, "exchange": _text(death.get("exchange")), "routing_key": keys[0] if keys else "",
                "type": kind, "message_id": message_id, "user_id": delivery.user_id or "", "recipient": recipient,
                "tries": _tries(headers, death, self.ctx.config.broker.delivery_limit),
                "headers": {k: _text(v) for k, v in headers.items() if not str(k).startswith("x-")},
            }
            path = _record_path(self.ctx.config, row.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, ensure_ascii=False), "utf-8")
            audit.append(s, "hub", "message.dead_letter", message_id, reason=reason, kept_at=kept, kind=kind,
                         recipient=recipient, dead_letter=row.id)
            owed = self._mark_and_tell(s, message_id, kind, recipient, delivery.user_id or "", reason)
        self.ctx.observer.document_rejected(CODE)
        log.error("死信 (dead letter) %s [%s] %s%s", loggable(message_id) or "(no id)", loggable(kind) or "?",
                  loggable(reason), f" for {loggable(recipient)}" if recipient else "")
        if owed and delivery.publisher is not None:
            try:
                outbox.flush(self.ctx.db, delivery.publisher, owed, store=self.ctx.content)
            except Exception as exc:  # noqa: BLE001 - the outbox relay sends it later
                log.warning("dead-letter notice for %s waits for the outbox relay: %s", loggable(message_id), exc)

    def _mark_and_tell(self, s: Any, message_id: str, kind: str, recipient: str, user_id: str,
                       reason: str) -> list[str]:
        """Mark the delivery and owe the sender a notice. Returns the outbox keys."""
        if kind != messages.DOCUMENT or not message_id:
            return []
        doc = s.get(Document, message_id)
        if doc is not None and recipient:  # a copy the hub routed: that recipient's delivery
            sender, concerns = doc.sender, (recipient,)
            row = s.execute(select(DeliveryRow).where(DeliveryRow.message_id == message_id,
                                                      DeliveryRow.recipient == recipient)).scalar_one_or_none()
            if row is not None and row.state in states.OPEN:
                row.state = states.DEAD_LETTER
        else:  # the hub itself could not take it in: the publishing unit, whole document
            sender, concerns = address_of_user(self.ctx.config, user_id) or "", ()
        if not sender:
            return []
        route = self.ctx.route(sender)
        if route.kind == "paper":
            return []
        names = "、".join(concerns) or "全部收文单位"
        _, der = make_notice(
            message_id=message_id, event=CODE, code=CODE,
            message=f"发往 {names} 的公文多次处理失败, 已转入死信, 信息中心排除原因后将重新投递 "
                    f"(dead-lettered: {reason}; the information centre will replay it)",
            recipients=concerns, hub=self.ctx.config.prefix, cert=self.ctx.identity.cert, key=self.ctx.identity.key,
        )
        key = messages.notice_key(message_id, CODE, ",".join(concerns))
        outbox.add(s, key=key, kind=messages.NOTICE, route=route, address=sender, body=der)
        return [key]


def list_dead_letters(config: HubConfig, db: Database, *, include_replayed: bool = False) -> list[DeadLetter]:
    codes = (CODE, REPLAYED) if include_replayed else (CODE,)
    with db.read() as s:
        rows = list(s.execute(select(Rejection).where(Rejection.code.in_(codes)).order_by(Rejection.id)).scalars())
    result = []
    for row in rows:
        record = _load_record(config, row.id)
        result.append(DeadLetter(
            id=row.id, message_id=row.message_id, kind=record.get("type", ""), queue=record.get("queue", ""),
            recipient=record.get("recipient", ""), sender=row.sender, reason=row.message,
            at=localtime.iso(row.at) or "", replayed=row.code == REPLAYED,
            kept=bool(row.kept_at) and Path(row.kept_at).exists(),
            tries=record["tries"] if isinstance(record.get("tries"), int) else None,
        ))
    return result


PAGE_MAX = 200


def replay_command(config: HubConfig, rejection_id: int) -> str:
    """What the information centre types to put it back (the home is the operator's own path)."""
    return f"docex hub dead-letters replay --home {shlex.quote(str(config.home))} {int(rejection_id)}"


def page(config: HubConfig, db: Database, *, offset: int = 0, limit: int = 50,
         include_replayed: bool = False) -> dict[str, Any]:
    """One page of dead letters, newest first, as the dashboard shows them: unit names,
    the document's number and title where the hub accepted it, the named code with its
    description, the tries, and the command that replays it. Values a publisher chose are
    returned as data; the page shows them as text."""
    offset, limit = max(0, int(offset)), max(1, min(PAGE_MAX, int(limit)))
    codes = (CODE, REPLAYED) if include_replayed else (CODE,)
    with db.read() as s:
        total = s.execute(select(func.count()).select_from(Rejection).where(Rejection.code.in_(codes))).scalar_one()
        rows = list(s.execute(select(Rejection).where(Rejection.code.in_(codes))
                              .order_by(Rejection.id.desc()).offset(offset).limit(limit)).scalars())
        records = {row.id: _load_record(config, row.id) for row in rows}
        docs = {d.message_id: d for d in s.execute(select(Document).where(
            Document.message_id.in_({r.message_id for r in rows if r.message_id}))).scalars()}
        senders = {row.id: (docs[row.message_id].sender if row.message_id in docs
                            else address_of_user(config, row.sender) or "") for row in rows}
        addresses = {a for a in senders.values() if a} | {records[r.id].get("recipient", "") for r in rows}
        names = dict(s.execute(select(Unit.address, Unit.name).where(Unit.address.in_(addresses - {""}))).tuples().all())
    items = []
    for row in rows:
        record, doc = records[row.id], docs.get(row.message_id)
        sender, recipient = senders[row.id], str(record.get("recipient", ""))
        items.append({
            "id": row.id, "at": localtime.iso(row.at), "message_id": row.message_id,
            "kind": record.get("type", ""), "queue": record.get("queue", ""),
            "sender": sender, "sender_name": names.get(sender, ""), "sender_login": row.sender,
            "recipient": recipient, "recipient_name": names.get(recipient, ""),
            "doc_number": doc.doc_number if doc else "", "title": doc.title if doc else "",
            "code": CODE if row.code == CODE else REPLAYED, "code_zh": describe(CODE), "code_en": describe(CODE, "en"),
            "reason": row.message, "tries": record["tries"] if isinstance(record.get("tries"), int) else None,
            "replayed": row.code == REPLAYED, "kept": bool(row.kept_at) and Path(row.kept_at).exists(),
            "replay": replay_command(config, row.id) if row.code == CODE else "",
        })
    return {"items": items, "total": total, "offset": offset, "limit": limit}


def _load_record(config: HubConfig, rejection_id: int) -> dict[str, Any]:
    try:
        data = json.loads(_record_path(config, rejection_id).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ReplayError(Exception):
    pass


def replay(config: HubConfig, db: Database, publisher: ConfirmedPublisher, rejection_id: int) -> DeadLetter:
    """Put one dead letter back where it died, with confirms; the delivery is open again.

    A copy the hub routed goes back to its queue as the hub publishes copies. A message
    that died in the hub's own ingress goes back to the ingress as the hub's login, naming
    the unit it came from (`docex-replay-of`), which only the hub's login may claim."""
    with db.read() as s:
        row = s.get(Rejection, rejection_id)
    if row is None or row.code != CODE:
        raise ReplayError(f"没有待处理的死信 #{rejection_id} (no dead letter with that id)")
    record = _load_record(config, row.id)
    try:
        body = Path(row.kept_at).read_bytes()
    except OSError as exc:
        raise ReplayError(f"死信 #{rejection_id} 的内容已不在 (its bytes are no longer kept): {exc}") from None
    queue, kind = record.get("queue", ""), record.get("type", "")
    headers = dict(record.get("headers") or {})
    if queue.startswith(("unit.", "link.")):
        item = PublishItem(record.get("exchange") or "docex.deliver", record.get("routing_key", ""), body,
                           row.message_id, headers=headers, type=kind or None)
    else:  # died in the hub's own ingress (documents or receipts)
        headers[messages.H_REPLAY_OF] = record.get("user_id", "")
        item = PublishItem(INGRESS_EXCHANGE, ingress_routing_key(kind), body, row.message_id, headers=headers,
                           user_id=hub_user(config), type=kind or None)
    publisher.publish_many([item])
    with db.session() as s:
        live = s.get(Rejection, rejection_id)
        if live is not None:
            live.code = REPLAYED
        recipient = record.get("recipient", "")
        if kind == messages.DOCUMENT and recipient:
            delivery = s.execute(select(DeliveryRow).where(DeliveryRow.message_id == row.message_id,
                                                           DeliveryRow.recipient == recipient)).scalar_one_or_none()
            if delivery is not None and delivery.state == states.DEAD_LETTER:
                delivery.state = states.ROUTED
        audit.append(s, "operator", "message.dead_letter_replay", row.message_id, dead_letter=rejection_id, queue=queue)
    log.info("死信 #%d (%s) 已重新投递 (replayed to %s)", rejection_id, loggable(row.message_id), loggable(queue) or "ingress")
    return next(d for d in list_dead_letters(config, db, include_replayed=True) if d.id == rejection_id)
