"""Intake: every message on the hub's ingress queue, checked, recorded, routed.

A document is accepted only when its outer signature, the signer's chain and revocation,
the AMQP-authenticated publisher, a new message id, known and enabled recipients, an
allowed classification and its size all check out. Then the document, one delivery per
recipient and the outbox rows are stored in one transaction, the copies published with
confirms, and only then is the ingress message acknowledged."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from docex.broker import ConfirmedPublisher, Delivery, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE
from docex.hub import audit, broker, outbox, states
from docex.hub import directory as hub_directory
from docex.hub import evidence as hub_evidence
from docex.hub.context import HubContext, Origin
from docex.hub.models import Delivery as DeliveryRow
from docex.hub.models import Document, Outbox, Receipt, Unit, utcnow
from docex.hub.refusals import refuse
from docex.pki.errors import PkiError
from docex.pki.recipients import check_recipients
from docex.protocols import messages
from docex.protocols.address import Route, is_under
from docex.protocols.envelope import OuterLayer, verify_outer
from docex.protocols.errors import DocexError, describe
from docex.protocols.header import RoutingHeader
from docex.protocols.manifest import check_classification
from docex.protocols.receipt import Receipt as ReceiptStatement
from docex.protocols.receipt import verify_receipt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ReceiptOutcome:
    new_state: str | None  # the state the delivery moved to, if it moved
    latency: float | None
    owed: list[Outbox]  # the copy for the sender, if one is owed


class Intake:
    """The hub's handler for `hub.ingress`. Thread-safe: consumer workers share it."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    # -- dispatch ---------------------------------------------------------------------------
    def __call__(self, delivery: Delivery) -> None:
        kind = delivery.properties.type or messages.DOCUMENT
        origin = self.ctx.origin(self._publisher_of(delivery))
        publisher = delivery.publisher
        assert publisher is not None
        if kind == messages.DOCUMENT:
            self.document(delivery, origin, publisher)
        elif kind == messages.RECEIPT:
            self.receipt(delivery, origin, publisher)
        elif kind == messages.RECALL:
            from docex.hub.recall import handle_recall

            handle_recall(self.ctx, delivery, origin, publisher)
        elif kind == messages.CHUNK:
            from docex.hub.chunks import handle_chunk

            handle_chunk(self.ctx, delivery, origin, publisher)
        elif kind == messages.HEARTBEAT:
            self.heartbeat(origin)
        elif kind == messages.DIRECTORY_REQUEST:
            self.directory_request(origin, publisher, (delivery.headers or {}).get(messages.H_DIRECTORY_VERSION))
            if delivery.body:
                from docex.hub.federation import answer_lookup

                answer_lookup(self.ctx, delivery.body, origin, publisher)
        elif kind == messages.DIRECTORY and origin is not None and origin.kind == "link":
            from docex.hub.federation import accept_remote_directory

            accept_remote_directory(self.ctx, delivery, origin)
        elif kind == messages.CHECKPOINT and origin is not None and origin.kind == "link":
            self.checkpoint(delivery, origin)
        elif kind == messages.NOTICE and origin is not None and origin.kind == "link":
            from docex.hub.federation import accept_remote_notice

            accept_remote_notice(self.ctx, delivery, origin, publisher)
        else:
            refuse(self.ctx, delivery, origin, "malformed_envelope", f"unexpected message type {kind!r}", publisher=publisher)

    def _publisher_of(self, delivery: Delivery) -> str | None:
        """Who published it, as RabbitMQ vouches (user_id). A dead letter the information
        centre replays comes from the hub's own login naming the unit it first came from;
        only the hub's login may say that."""
        replay_of = (delivery.headers or {}).get(messages.H_REPLAY_OF)
        if replay_of and delivery.user_id == broker.hub_user(self.ctx.config):
            return replay_of.decode() if isinstance(replay_of, bytes) else str(replay_of)
        return delivery.user_id

    # -- documents --------------------------------------------------------------------------
    def _check(self, delivery: Delivery, origin: Origin | None) -> tuple[OuterLayer, dict[str, Route]]:
        cfg = self.ctx.config
        if origin is None:
            raise DocexError("sender_mismatch", f"published by a broker user docex does not know ({delivery.user_id})")
        if len(delivery.body) > cfg.limits.max_envelope_bytes:
            raise DocexError("too_large", f"{len(delivery.body)} bytes, the limit is {cfg.limits.max_envelope_bytes}")
        outer = verify_outer(delivery.body, self.ctx.identity.trust, max_size=cfg.limits.max_envelope_bytes)
        h = outer.header
        if origin.kind == "unit" and h.sender != origin.name:
            raise DocexError("sender_mismatch", f"{origin.name} published an envelope signed as {h.sender}")
        if origin.kind == "link":
            came_from = self.ctx.route(h.sender)
            if came_from.link != origin.name:
                raise DocexError("sender_mismatch", f"{h.sender} cannot arrive over link {origin.name}")
        check_classification(h.classification)
        hops = int((delivery.headers or {}).get(messages.H_HOPS, 0) or 0)
        if hops > messages.MAX_HOPS:
            raise DocexError("malformed_envelope", "the envelope went round too many hubs")
        routes: dict[str, Route] = {}
        enc_certs: list[x509.Certificate] = []
        with self.ctx.db.read() as s:
            if is_under(h.sender, cfg.prefix) and origin.kind == "unit":
                unit = s.get(Unit, h.sender)
                if unit is None:
                    raise DocexError("unknown_sender", f"{h.sender} is not registered at this hub")
                if unit.state != "enabled":
                    raise DocexError("sender_disabled", f"{h.sender} is disabled")
            for address in h.all_recipients:
                route = self.ctx.route(address)
                if route.kind == "local":
                    unit = s.get(Unit, address)
                    if unit is None and origin.kind == "link":
                        routes[address] = Route("paper")  # no hub of the chain knows it: paper
                        continue
                    if unit is None:
                        raise DocexError("unknown_recipient", f"no unit {address} in the directory")
                    if unit.state != "enabled":
                        raise DocexError("recipient_disabled", f"{address} ({unit.name}) is disabled")
                    if unit.enc_cert:
                        enc_certs.append(x509.load_pem_x509_certificate(unit.enc_cert.encode()))
                elif origin.kind == "link" and route.link == origin.name:
                    continue  # the hub it came from delivers those itself (one copy per link)
                routes[address] = route
        if not routes:
            raise DocexError("unknown_recipient", "no recipient of this envelope is reachable from this hub")
        # Encrypted to a revoked or expired key: refused before it travels (issuer and serial
        # of every RecipientInfo, held against our CRLs and the certificates on record).
        check_recipients(outer.encrypted, self.ctx.identity.trust, enc_certs)
        return outer, routes

    def document(self, delivery: Delivery, origin: Origin | None, publisher: ConfirmedPublisher) -> None:
        started = time.monotonic()
        try:
            outer, routes = self._check(delivery, origin)
        except PkiError as exc:
            header = _header_or_none(delivery.body)
            mid = header.message_id if header else ""
            # A copy of a document we accepted (a tampered one, say) is refused without naming
            # that document in the notice: nothing unverifiable may change a verified one's state.
            named = bool(mid) and not self._accepted(mid)
            refuse(self.ctx, delivery, origin, exc.code, exc.message, message_id=mid, publisher=publisher,
                   name_in_notice=named)
            return
        h = outer.header
        digest = hashlib.sha256(delivery.body).hexdigest()
        owed: list[Outbox] = []
        with self.ctx.db.read() as s:
            known = s.get(Document, h.message_id) is not None
        # Evidence is signed and timestamped before the write lock is taken.
        evidence = [] if known else self._prepare_evidence(h, digest, routes, origin)
        if not known:  # the bytes are on disk, fsynced, before the row naming them commits
            self.ctx.content.put(delivery.body, digest)
        with self.ctx.db.session() as s:
            existing = s.get(Document, h.message_id)
            replay = existing is not None and existing.envelope_sha256 != digest
            squatted = existing is not None and existing.sender != h.sender
            if existing is None:
                if known:  # it was there a moment ago and is gone: make the evidence now
                    evidence = self._prepare_evidence(h, digest, routes, origin)
                    self.ctx.content.put(delivery.body, digest)
                owed = self._record(s, h, digest, delivery.body, routes, origin, evidence)
        if squatted:
            # Another unit holds this id: this sender's document did NOT go. Its notice names
            # the recipients, which the sender's agent shows as not delivered (`duplicate`).
            refuse(self.ctx, delivery, origin, "duplicate",
                   f"message id {h.message_id} is already used by another unit; send the document again",
                   message_id=h.message_id, publisher=publisher, notice_recipients=h.all_recipients)
            return
        if replay:
            # The sender's own id again with other bytes: what the hub accepted stands.
            refuse(self.ctx, delivery, origin, "duplicate",
                   f"message id {h.message_id} was already used for another document",
                   message_id=h.message_id, publisher=publisher)
            return
        prefix = self.ctx.config.prefix
        keys = [h.message_id, messages.notice_key(h.message_id, "paper_route"),
                messages.notice_key(h.message_id, "accepted", prefix), messages.notice_key(h.message_id, "relayed", prefix)]
        if existing is None:  # new: publish the rows just written, the envelope still in hand
            self._publish(publisher, owed, {h.message_id: delivery.body})
        else:  # a redelivery: publish whatever of it is still owed
            self._flush(publisher, keys)
        if existing is None:
            observer = self.ctx.observer
            observer.document_accepted(h.sender, len(routes), len(delivery.body), time.monotonic() - started)
            for route in routes.values():
                observer.delivery_state(states.PAPER_ROUTE if route.kind == "paper" else states.ACCEPTED)

    def _accepted(self, message_id: str) -> bool:
        with self.ctx.db.read() as s:
            return s.get(Document, message_id) is not None

    def _record(self, s: Session, h: RoutingHeader, digest: str, body: bytes, routes: dict[str, Route],
                origin: Origin | None, evidence: list[tuple[str, bytes]]) -> list[Outbox]:
        """Store the document, its deliveries and the outbox rows it owes; returns those rows."""
        now = utcnow()
        hours = self.ctx.config.limits.deadline_hours.get(h.priority, 72.0)
        s.add(Document(
            message_id=h.message_id, sender=h.sender, title=h.title, doc_number=h.doc_number,
            priority=h.priority, classification=h.classification, size=len(body), envelope_sha256=digest,
            origin="local" if origin is None or origin.kind == "unit" else f"link:{origin.name}",
            created_at=_parse_time(h.created_at), accepted_at=now, deadline=now + dt.timedelta(hours=hours),
        ))
        s.flush()
        paper: list[str] = []
        owed: list[Outbox] = []
        for address, route in routes.items():
            if route.kind == "paper":
                state, where = states.PAPER_ROUTE, "paper"
                paper.append(address)
            else:
                state, where = states.ACCEPTED, "local" if route.kind == "local" else f"link:{route.link}"
                owed.append(outbox.add(s, key=h.message_id, kind=messages.DOCUMENT, route=route, address=address, body=None))
            s.add(DeliveryRow(message_id=h.message_id, recipient=address, route=where, state=state,
                              accepted_at=now, closed_at=now if state == states.PAPER_ROUTE else None,
                              code="paper_route" if paper and address in paper else ""))
        audit.append(s, "hub", "document.accept", h.message_id, sender=h.sender, doc_number=h.doc_number,
                     recipients=list(routes), digest=digest)
        prefix = self.ctx.config.prefix
        for event, der in evidence:
            hub_evidence.keep(s, message_id=h.message_id, event=event, issuer=prefix, der=der)
            owed += self._notify_sender(s, h.message_id, h.sender, event, der, "" if event == "paper_route" else prefix)
        if paper:
            audit.append(s, "hub", "document.paper_route", h.message_id, recipients=paper)
        s.flush()  # the rows get their ids, which the publication marks
        return owed

    def _notify_sender(self, s: Session, message_id: str, sender: str, event: str, der: bytes,
                       extra: str = "") -> list[Outbox]:
        route = self.ctx.route(sender)
        if route.kind == "paper":
            return []
        return [outbox.add(s, key=messages.notice_key(message_id, event, extra), kind=messages.NOTICE, route=route,
                           address=sender, body=der)]

    def _prepare_evidence(self, h: RoutingHeader, digest: str, routes: dict[str, Route],
                          origin: Origin | None) -> list[tuple[str, bytes]]:
        """Evidence for the sender: `accepted` from its own hub, `relayed` from each hub
        that takes the document over a link or hands it to one (the bridge's crossing is
        witnessed on both sides), `paper_route` for recipients off the network."""
        prefix = self.ctx.config.prefix
        made: list[tuple[str, bytes]] = []

        def make(event: str, **kw: Any) -> None:
            made.append((event, hub_evidence.prepare(self.ctx, message_id=h.message_id, event=event,
                                                     envelope_sha256=digest, **kw)))

        if origin is None or origin.kind == "unit":
            make("accepted", message=f"{prefix} 已接收 accepted", recipients=list(routes))
        links = sorted({f"link:{r.link}" for r in routes.values() if r.kind in ("child", "parent")})
        if (origin is not None and origin.kind == "link") or links:
            came = f"link:{origin.name}" if origin is not None and origin.kind == "link" else "local"
            onward = sorted({"local" if r.kind == "local" else "paper" if r.kind == "paper" else f"link:{r.link}"
                             for r in routes.values()})
            make("relayed", code=f"{came}->{','.join(onward)}", message=f"{prefix}: {came} → {', '.join(onward)}",
                 recipients=list(routes))
        paper = [a for a, r in routes.items() if r.kind == "paper"]
        if paper:
            make("paper_route", message=f"{describe('paper_route')}: {', '.join(paper)}", recipients=paper)
        return made

    def _flush(self, publisher: ConfirmedPublisher, keys: list[str]) -> None:
        with self.ctx.db.read() as s:
            rows = outbox.pending(s, keys)
        self._publish(publisher, rows)

    def _publish(self, publisher: ConfirmedPublisher, rows: list[Outbox], envelopes: dict[str, bytes] | None = None) -> None:
        from docex.hub.links import not_held

        # Copies for a paused or draining link wait in the outbox until it resumes.
        outbox.deliver(self.ctx.db, publisher, not_held(self.ctx.db, rows), self.ctx.observer, envelopes=envelopes,
                       store=self.ctx.content)

    # -- receipts ---------------------------------------------------------------------------
    def receipt(self, delivery: Delivery, origin: Origin | None, publisher: ConfirmedPublisher) -> None:
        try:
            if origin is None:
                raise DocexError("sender_mismatch", f"a receipt from an unknown broker user ({delivery.user_id})")
            receipt, _signer = verify_receipt(delivery.body, self.ctx.identity.trust)
            if origin.kind == "unit" and receipt.recipient != origin.name:
                raise DocexError("sender_mismatch", f"{origin.name} sent a receipt for {receipt.recipient}")
            if origin.kind == "link" and self.ctx.route(receipt.recipient).link != origin.name:
                raise DocexError("sender_mismatch", f"a receipt of {receipt.recipient} cannot arrive over {origin.name}")
        except PkiError as exc:
            refuse(self.ctx, delivery, origin, exc.code, exc.message, publisher=publisher)
            return
        key = messages.receipt_key(receipt.message_id, receipt.recipient, receipt.event)
        outcome: _ReceiptOutcome | None = None
        # The hub timestamps on the agent's behalf (before taking the write lock); the
        # stamped copy is what is kept and forwarded, and the recipient gets it back.
        body = hub_evidence.stamp(self.ctx, delivery.body) if origin.kind == "unit" else delivery.body
        with self.ctx.db.session() as s:
            row = s.execute(
                select(DeliveryRow).where(DeliveryRow.message_id == receipt.message_id,
                                          DeliveryRow.recipient == receipt.recipient)
            ).scalar_one_or_none()
            doc = s.get(Document, receipt.message_id) if row is not None else None
            foreign = doc is not None and doc.envelope_sha256 != receipt.envelope_sha256
            if row is not None and not foreign:
                seen = s.execute(
                    select(Receipt.id).where(Receipt.message_id == receipt.message_id,
                                             Receipt.recipient == receipt.recipient, Receipt.event == receipt.event)
                ).first()
                if seen is None:
                    outcome = self._record_receipt(s, row, receipt, body, origin, key)
                    if body != delivery.body:
                        outcome.owed.append(outbox.add(
                            s, key=f"{key}|stamped", kind=messages.RECEIPT, route=self.ctx.route(receipt.recipient),
                            address=receipt.recipient, body=body))
                        s.flush()
        if row is None:
            refuse(self.ctx, delivery, origin, "receipt_invalid",
                   f"no delivery of {receipt.message_id} to {receipt.recipient}", publisher=publisher)
            return
        if foreign:  # a receipt binds to the envelope delivered, by its digest
            refuse(self.ctx, delivery, origin, "receipt_invalid",
                   f"the receipt for {receipt.message_id} names an envelope this hub did not deliver",
                   message_id=receipt.message_id, publisher=publisher, name_in_notice=False)
            return
        if outcome is not None:  # new: publish the copy just written
            self._publish(publisher, outcome.owed)
        else:  # a redelivery: whatever is still owed
            self._flush(publisher, [key, f"{key}|stamped"])
        if outcome is not None:  # counted once the effect is durable, and only if it was new
            observer = self.ctx.observer
            observer.receipt(receipt.event)
            if outcome.new_state is not None:
                observer.delivery_state(outcome.new_state)
            if outcome.latency is not None:
                (observer.delivered if receipt.event == "delivered" else observer.signed_for)(outcome.latency)

    def _record_receipt(self, s: Session, row: DeliveryRow, receipt: ReceiptStatement, der: bytes, origin: Origin,
                        key: str) -> _ReceiptOutcome:
        """Keep the signed receipt, move the delivery forward (never back), audit, and owe
        the sender a copy (unless the sender lies behind the link it came over)."""
        now = utcnow()
        latency: float | None = None
        s.add(Receipt(message_id=receipt.message_id, recipient=receipt.recipient, event=receipt.event,
                      reason=receipt.reason or receipt.error, at=_parse_time(receipt.at), der=der))
        doc = s.get(Document, receipt.message_id)
        assert doc is not None  # a delivery row exists only with its document
        if receipt.event == "delivered":
            row.delivered_at = row.delivered_at or now
            latency = (now - doc.accepted_at).total_seconds()
        elif receipt.event == "signed_for":
            row.signed_for_at = now
            row.person = receipt.person
            if row.delivered_at is not None:
                latency = (now - row.delivered_at).total_seconds()
        elif receipt.event == "returned":
            row.returned_at = now
            row.reason = receipt.reason
            row.person = receipt.person
        elif receipt.event == "refused":
            row.code = receipt.error
            row.reason = receipt.reason
        new_state = states.EVENT_STATE[receipt.event]
        advanced = states.advances(row.state, new_state)
        if advanced:
            row.state = new_state
            if new_state in states.FINAL:
                row.closed_at = now
        audit.append(s, receipt.recipient, f"receipt.{receipt.event}", receipt.message_id,
                     reason=receipt.reason, person=receipt.person, error=receipt.error)
        route = self.ctx.route(doc.sender)
        owed = []
        if route.kind != "paper" and not (origin.kind == "link" and route.link == origin.name):
            owed.append(outbox.add(s, key=key, kind=messages.RECEIPT, route=route, address=doc.sender, body=der))
        s.flush()  # ids for the publication mark
        return _ReceiptOutcome(new_state if advanced else None, latency, owed)

    # -- audit checkpoints of child hubs ------------------------------------------------------
    def checkpoint(self, delivery: Delivery, origin: Origin) -> None:
        """A child hub's audit checkpoint: verified (signed by the hub owning the prefix
        behind this link) and kept as received, outside the database."""
        from docex.hub import checkpoints

        link = self.ctx.links().get(origin.name)
        try:
            if link is None or link.role != "child":
                raise DocexError("sender_mismatch", f"checkpoints come only from child hubs, not over {origin.name}")
            cp, new = checkpoints.keep_remote(self.ctx.config, delivery.body, self.ctx.identity.trust, link.prefix)
        except PkiError as exc:
            refuse(self.ctx, delivery, origin, exc.code, exc.message, message_id=delivery.message_id or "")
            return
        if new:
            with self.ctx.db.session() as s:
                audit.append(s, f"link:{origin.name}", "audit.remote_checkpoint", link.prefix, seq=cp.seq,
                             head=cp.head, entries=cp.entries)

    # -- small ones -------------------------------------------------------------------------
    def heartbeat(self, origin: Origin | None) -> None:
        if origin is None or origin.kind != "unit":
            return
        now = utcnow()
        with self.ctx.db.session() as s:
            s.execute(update(Unit).where(Unit.address == origin.name).values(last_seen=now))

    def directory_request(self, origin: Origin | None, publisher: ConfirmedPublisher, holds: Any = None) -> None:
        """The whole snapshot for an agent that asks, unless it says it holds the current one."""
        if origin is None or origin.kind != "unit":
            return
        with self.ctx.db.read() as s:
            current = hub_directory.version(s)
            version, der = (current, b"") if str(holds or "") == str(current) else hub_directory.signed_snapshot(
                s, self.ctx.config.prefix, self.ctx.identity, self.ctx.child_prefixes())
        from docex.hub.federation import remote_items

        own = [PublishItem(DELIVER_EXCHANGE, origin.name, der, f"directory|{self.ctx.config.prefix}|{version}|{origin.name}",
                           type=messages.DIRECTORY)] if der else []
        if items := [*own, *remote_items(self.ctx, origin.name)]:
            publisher.publish_many(items)


def _header_or_none(body: bytes) -> RoutingHeader | None:
    from docex.protocols.envelope import read_header

    try:
        return read_header(body)
    except PkiError:
        return None


def _parse_time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return utcnow()
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


