"""Refusing input: nothing refused is dropped silently. The bytes are kept for
inspection, the refusal is recorded and audited, counted, and the sender gets a signed
notice with the code."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from docex.broker import ConfirmedPublisher, Delivery, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE
from docex.hub import audit
from docex.hub.context import HubContext, Origin
from docex.hub.models import Rejection
from docex.protocols import localtime, messages
from docex.protocols.errors import describe
from docex.protocols.identifiers import is_message_id
from docex.protocols.logsafe import loggable
from docex.protocols.notice import make_notice
from docex.protocols.safepath import inside

log = logging.getLogger(__name__)


_prune_lock = threading.Lock()
_written = 0
_pruned_at = 0.0


def keep_bytes(ctx: HubContext, body: bytes) -> str:
    """Keep (the head of) refused bytes under refused/<day>/<sha256 of the whole>.bin, then
    prune to the configured bounds. The name is our own digest, proved inside the folder."""
    limits = ctx.config.limits
    day = localtime.today().isoformat()
    folder = ctx.config.refused_dir / day
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    whole = len(body) <= limits.refused_max_item_bytes
    name = f"{hashlib.sha256(body).hexdigest()}{'' if whole else '.head'}.bin"
    path = inside(folder, name)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body[: limits.refused_max_item_bytes])
        tmp.replace(path)
    # Pruning lists the folder: done every 1% of the bound (or minute), not for every refusal
    # of a flood; the count may overshoot by that 1% meanwhile.
    global _written, _pruned_at
    with _prune_lock:
        _written += 1
        due = _written >= max(1, limits.refused_max_files // 100) or time.monotonic() - _pruned_at > 60
        if due:
            _written, _pruned_at = 0, time.monotonic()
    if due:
        prune_refused(ctx.config.refused_dir, limits.refused_max_files, limits.refused_max_age_days)
    return str(path)


def prune_refused(root: Path, max_files: int, max_age_days: int) -> int:
    """Remove day folders older than `max_age_days` and then the oldest files beyond
    `max_files`. Returns how many files went."""
    if not root.exists():
        return 0
    cutoff = (localtime.today() - dt.timedelta(days=max_age_days)).isoformat()
    removed = 0
    days = sorted(p for p in root.iterdir() if p.is_dir())
    for day in days:
        if day.name < cutoff:
            removed += sum(1 for _ in day.glob("*.bin"))
            shutil.rmtree(day, ignore_errors=True)
    files = [f for day in sorted(p for p in root.iterdir() if p.is_dir()) for f in day.glob("*.bin")]
    excess = len(files) - max_files
    if excess > 0:
        files.sort(key=lambda f: (f.parent.name, f.stat().st_mtime))
        for f in files[:excess]:
            f.unlink(missing_ok=True)
            removed += 1
    return removed


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
    name_in_notice: bool = True,
    notice_recipients: tuple[str, ...] = (),
) -> None:
    """Record a refusal and tell whoever published it (when RabbitMQ vouches for them)."""
    kept = keep_bytes(ctx, delivery.body)
    # The record keeps whatever the publisher called it (bound as data, cut to the column);
    # the signed notice names a document only by an id of a UUID's form.
    msg_id = (message_id or delivery.message_id or "")[:128]
    notice_id = next((v for v in (message_id, delivery.message_id or "") if is_message_id(v)), "")
    if not name_in_notice:
        notice_id = ""
    who = sender or (origin.name if origin else "")
    text = f"{describe(code)}: {message}"
    der: bytes | None = None
    with ctx.db.session() as s:
        s.add(Rejection(message_id=msg_id, sender=who, code=code, message=message, kept_at=kept))
        audit.append(s, "hub", "document.reject", msg_id, code=code, message=message, sender=who,
                     user=delivery.user_id or "", kept_at=kept)
        if notice_id and (delivery.properties.type or messages.DOCUMENT) == messages.DOCUMENT and origin is not None:
            # A refused submission is delivery evidence too, bound to the bytes refused.
            from docex.hub.evidence import issue

            der = issue(ctx, s, message_id=notice_id, event="rejected", code=code, message=text,
                        recipients=notice_recipients, envelope_sha256=hashlib.sha256(delivery.body).hexdigest())
    ctx.observer.document_rejected(code)
    # Every value here may be the publisher's own choice: shown, never written raw into the log.
    log.warning("refused %s from %s: [%s] %s", loggable(msg_id) or "(no id)", loggable(who or delivery.user_id),
                code, loggable(message, 500))
    if origin is None or publisher is None:
        return
    routing_key = origin.name if origin.kind == "unit" else f"link.{origin.name}"
    if der is None:
        _, der = make_notice(
            message_id=notice_id, event="rejected", code=code, message=text,
            recipients=notice_recipients, hub=ctx.config.prefix, cert=ctx.identity.cert, key=ctx.identity.key,
        )
    try:
        publisher.publish_many([PublishItem(
            DELIVER_EXCHANGE, routing_key, der, messages.notice_key(notice_id or msg_id, "rejected", code),
            headers={messages.H_RECIPIENT: who}, type=messages.NOTICE,
        )])
    except Exception as exc:  # noqa: BLE001 - the refusal is recorded; the notice is a courtesy
        log.warning("could not send the rejection notice for %s: %s", loggable(msg_id), exc)
