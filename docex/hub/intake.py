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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from docex.broker import ConfirmedPublisher, Delivery, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE
from docex.hub import audit, broker, outbox, states
from docex.hub import directory as hub_directory
from docex.hub import evidence as hub_evidence
from docex.hub.context import HubContext, Origin
from docex.hub.models import Delivery as DeliveryRow
from docex.hub.models import Document, EvidenceRecord, Receipt, Unit, table_of, utcnow
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

# Writes a batch's envelopes to the content store in parallel (threads start when first used).
_WRITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="docex-content")


@dataclass(frozen=True)
class _ReceiptOutcome:
    new_state: str | None  # the state the delivery moved to, if it moved
    latency: float | None


@dataclass
class _Rcpt:
    """A verified receipt on its way into the store."""

    delivery: Delivery
    origin: Origin
    receipt: ReceiptStatement
    key: str
    body: bytes  # as kept and forwarded (stamped by this hub when a unit sent it)
    outcome: _ReceiptOutcome | None = None  # set when recorded now (None: seen before)
    problem: str = ""  # no_delivery | foreign


@dataclass
class _Doc:
    """A document that passed its checks, on its way into the store."""

    delivery: Delivery
    origin: Origin | None
    outer: OuterLayer
    routes: dict[str, Route]
    digest: str
    started: float
    evidence: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def header(self) -> RoutingHeader:
        return self.outer.header

    @property
    def message_id(self) -> str:
        return self.outer.header.message_id


class Intake:
    """The hub's handler for `hub.ingress`. Thread-safe: consumer workers share it."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    # -- dispatch ---------------------------------------------------------------------------
    def batch(self, deliveries: list[Delivery]) -> None:
        """The consumer's batch handler: documents together, receipts together, the rest
        one by one (see `documents`, `receipts`)."""
        documents: list[Delivery] = []
        receipts: list[Delivery] = []
        for delivery in deliveries:
            kind = delivery.properties.type or messages.DOCUMENT
            if kind == messages.DOCUMENT:
                documents.append(delivery)
            elif kind == messages.RECEIPT:
                receipts.append(delivery)
            else:
                self(delivery)
        if documents:
            self.documents(documents)
        if receipts:
            self.receipts(receipts)

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
            self._refuse_document(delivery, origin, exc, publisher)
            return
        h = outer.header
        digest = hashlib.sha256(delivery.body).hexdigest()
        doc = _Doc(delivery, origin, outer, routes, digest, started)
        owed: list[outbox.Row] = []
        with self.ctx.db.read() as s:
            known = s.get(Document, h.message_id) is not None
        # Evidence is signed and timestamped before the write lock is taken.
        if not known:
            doc.evidence = self._prepare_evidence(h, digest, routes, origin)
        if not known:  # the bytes are on disk, fsynced, before the row naming them commits
            self.ctx.content.put(delivery.body, digest)
        with self.ctx.db.session() as s:
            existing = s.get(Document, h.message_id)
            replay = existing is not None and existing.envelope_sha256 != digest
            squatted = existing is not None and existing.sender != h.sender
            if existing is None:
                if known:  # it was there a moment ago and is gone: make the evidence now
                    doc.evidence = self._prepare_evidence(h, digest, routes, origin)
                    self.ctx.content.put(delivery.body, digest)
                owed = self._record_many(s, [doc])
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
            self._accepted_metrics([doc])
        else:  # a redelivery: publish whatever of it is still owed
            self._flush(publisher, keys)

    def _refuse_document(self, delivery: Delivery, origin: Origin | None, exc: PkiError,
                         publisher: ConfirmedPublisher) -> None:
        header = _header_or_none(delivery.body)
        mid = header.message_id if header else ""
        # A copy of a document we accepted (a tampered one, say) is refused without naming
        # that document in the notice: nothing unverifiable may change a verified one's state.
        named = bool(mid) and not self._accepted(mid)
        refuse(self.ctx, delivery, origin, exc.code, exc.message, message_id=mid, publisher=publisher,
               name_in_notice=named)

    def _accepted_metrics(self, docs: list[_Doc]) -> None:
        observer = self.ctx.observer
        for doc in docs:
            observer.document_accepted(doc.header.sender, len(doc.routes), len(doc.delivery.body),
                                       time.monotonic() - doc.started)
            for route in doc.routes.values():
                observer.delivery_state(states.PAPER_ROUTE if route.kind == "paper" else states.ACCEPTED)

    def documents(self, deliveries: list[Delivery]) -> None:
        """Several documents at once (the consumer's batch): each verified on its own, the
        new ones recorded in one transaction with one audit append, their copies published
        in one confirmed batch. Anything out of the ordinary (a refusal, an id seen before,
        twice in the batch) takes the one-document path. Raising leaves the whole batch
        unacknowledged: the consumer then tries each document alone, and what this batch
        committed is a redelivery there (published from the outbox, never recorded twice)."""
        fresh: list[_Doc] = []
        alone: list[Delivery] = []
        refused: list[tuple[Delivery, Origin | None, PkiError]] = []
        ids: set[str] = set()
        publisher = deliveries[0].publisher
        assert publisher is not None
        for delivery in deliveries:
            started = time.monotonic()
            origin = self.ctx.origin(self._publisher_of(delivery))
            try:
                outer, routes = self._check(delivery, origin)
            except PkiError as exc:
                refused.append((delivery, origin, exc))
                continue
            mid = outer.header.message_id
            if mid in ids:
                alone.append(delivery)
                continue
            ids.add(mid)
            fresh.append(_Doc(delivery, origin, outer, routes, hashlib.sha256(delivery.body).hexdigest(), started))
        if fresh:
            with self.ctx.db.read() as s:
                known = set(s.execute(select(Document.message_id).where(Document.message_id.in_(ids))).scalars())
            alone += [d.delivery for d in fresh if d.message_id in known]
            fresh = [d for d in fresh if d.message_id not in known]
        for doc in fresh:  # signed and timestamped before the write lock is taken
            doc.evidence = self._prepare_evidence(doc.header, doc.digest, doc.routes, doc.origin)
        # The bytes are on disk, fsynced, before the rows naming them commit. Side by side:
        # one after another each waited for its own fsync (~30 ms here); together they share.
        content = self.ctx.content
        list(_WRITERS.map(lambda d: content.put(d.delivery.body, d.digest), fresh))
        if fresh:
            with self.ctx.db.session() as s:
                raced = set(s.execute(select(Document.message_id)
                                      .where(Document.message_id.in_([d.message_id for d in fresh]))).scalars())
                alone += [d.delivery for d in fresh if d.message_id in raced]
                fresh = [d for d in fresh if d.message_id not in raced]
                owed = self._record_many(s, fresh)
            self._batch_committed([d.message_id for d in fresh])
            self._publish(publisher, owed, {d.message_id: d.delivery.body for d in fresh})
            self._accepted_metrics(fresh)
        # Refused after the batch's effect is durable: should the batch fail before, each is
        # refused once, on its own, when the consumer retries them one by one.
        for delivery, origin, problem in refused:
            self._refuse_document(delivery, origin, problem, publisher)
        for delivery in alone:
            self(delivery)

    def _batch_committed(self, message_ids: list[str]) -> None:
        """After a batch's transaction, before its copies are published (a seam where the
        crash tests stop the hub)."""

    def _accepted(self, message_id: str) -> bool:
        with self.ctx.db.read() as s:
            return s.get(Document, message_id) is not None

    def _record_many(self, s: Session, docs: list[_Doc]) -> list[outbox.Row]:
        """Store the documents, their deliveries, evidence and the outbox rows they owe, with
        Core statements (one per table) and one audit append; returns the outbox rows in
        the order they are to be published (each document's copies, then its notices)."""
        if not docs:
            return []
        now = utcnow()
        prefix = self.ctx.config.prefix
        limits = self.ctx.config.limits
        documents: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        evidences: list[dict[str, Any]] = []
        owed: list[dict[str, object]] = []
        entries: list[tuple[str, str, str, dict[str, Any]]] = []
        for doc in docs:
            h, origin = doc.header, doc.origin
            hours = limits.deadline_hours.get(h.priority, 72.0)
            documents.append({
                "message_id": h.message_id, "sender": h.sender, "title": h.title, "doc_number": h.doc_number,
                "priority": h.priority, "classification": h.classification, "size": len(doc.delivery.body),
                "envelope_sha256": doc.digest,
                "origin": "local" if origin is None or origin.kind == "unit" else f"link:{origin.name}",
                "created_at": _parse_time(h.created_at), "accepted_at": now,
                "deadline": now + dt.timedelta(hours=hours),
            })
            paper: list[str] = []
            for address, route in doc.routes.items():
                if route.kind == "paper":
                    state, where = states.PAPER_ROUTE, "paper"
                    paper.append(address)
                else:
                    state, where = states.ACCEPTED, "local" if route.kind == "local" else f"link:{route.link}"
                    owed.append(outbox.spec(key=h.message_id, kind=messages.DOCUMENT, route=route, address=address,
                                            body=None))
                deliveries.append({
                    "message_id": h.message_id, "recipient": address, "route": where, "state": state,
                    "accepted_at": now, "closed_at": now if state == states.PAPER_ROUTE else None,
                    "code": "paper_route" if route.kind == "paper" else "",
                })
            entries.append(("hub", "document.accept", h.message_id,
                            {"sender": h.sender, "doc_number": h.doc_number, "recipients": list(doc.routes),
                             "digest": doc.digest}))
            sender_route = self.ctx.route(h.sender)
            for event, der in doc.evidence:
                evidences.append({"message_id": h.message_id, "event": event, "issuer": prefix,
                                  "digest": hashlib.sha256(der).hexdigest(), "der": der, "at": now})
                if sender_route.kind != "paper":
                    extra = "" if event == "paper_route" else prefix
                    owed.append(outbox.spec(key=messages.notice_key(h.message_id, event, extra), kind=messages.NOTICE,
                                            route=sender_route, address=h.sender, body=der))
            if paper:
                entries.append(("hub", "document.paper_route", h.message_id, {"recipients": paper}))
        conn = s.connection()
        conn.execute(insert(table_of(Document)), documents)
        conn.execute(insert(table_of(DeliveryRow)), deliveries)
        if evidences:  # fresh signatures: their digests are new
            conn.execute(insert(table_of(EvidenceRecord)), evidences)
        audit.append_many(s, entries)
        return list(outbox.add_many(s, owed))

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

    def _publish(self, publisher: ConfirmedPublisher, rows: Sequence[outbox.Row],
                 envelopes: dict[str, bytes] | None = None) -> None:
        from docex.hub.links import not_held

        # Copies for a paused or draining link wait in the outbox until it resumes.
        outbox.deliver(self.ctx.db, publisher, not_held(self.ctx.db, rows), self.ctx.observer, envelopes=envelopes,
                       store=self.ctx.content)

    # -- receipts ---------------------------------------------------------------------------
    def receipt(self, delivery: Delivery, origin: Origin | None, publisher: ConfirmedPublisher) -> None:
        try:
            item = self._check_receipt(delivery, origin)
        except PkiError as exc:
            refuse(self.ctx, delivery, origin, exc.code, exc.message, publisher=publisher)
            return
        self._settle_receipts([item], publisher)

    def receipts(self, deliveries: list[Delivery]) -> None:
        """Several receipts at once: each verified (and stamped) on its own, all recorded in
        one transaction with one audit append, the copies published in one confirmed batch."""
        publisher = deliveries[0].publisher
        assert publisher is not None
        items: list[_Rcpt] = []
        alone: list[Delivery] = []
        keys: set[str] = set()
        refused: list[tuple[Delivery, Origin | None, PkiError]] = []
        for delivery in deliveries:
            origin = self.ctx.origin(self._publisher_of(delivery))
            try:
                item = self._check_receipt(delivery, origin)
            except PkiError as exc:
                refused.append((delivery, origin, exc))
                continue
            if item.key in keys:  # the same receipt twice in one batch: the second is a redelivery
                alone.append(delivery)
                continue
            keys.add(item.key)
            items.append(item)
        if items:
            self._settle_receipts(items, publisher)
        for delivery, origin, problem in refused:  # once the batch is durable (see `documents`)
            refuse(self.ctx, delivery, origin, problem.code, problem.message, publisher=publisher)
        for delivery in alone:
            self(delivery)

    def _check_receipt(self, delivery: Delivery, origin: Origin | None) -> _Rcpt:
        """Verified and stamped; raises PkiError (DocexError) when it is to be refused."""
        if origin is None:
            raise DocexError("sender_mismatch", f"a receipt from an unknown broker user ({delivery.user_id})")
        receipt, _signer = verify_receipt(delivery.body, self.ctx.identity.trust)
        if origin.kind == "unit" and receipt.recipient != origin.name:
            raise DocexError("sender_mismatch", f"{origin.name} sent a receipt for {receipt.recipient}")
        if origin.kind == "link" and self.ctx.route(receipt.recipient).link != origin.name:
            raise DocexError("sender_mismatch", f"a receipt of {receipt.recipient} cannot arrive over {origin.name}")
        key = messages.receipt_key(receipt.message_id, receipt.recipient, receipt.event)
        # The hub timestamps on the agent's behalf (before taking the write lock); the
        # stamped copy is what is kept and forwarded, and the recipient gets it back.
        body = hub_evidence.stamp(self.ctx, delivery.body) if origin.kind == "unit" else delivery.body
        return _Rcpt(delivery, origin, receipt, key, body)

    def _settle_receipts(self, items: list[_Rcpt], publisher: ConfirmedPublisher) -> None:
        with self.ctx.db.session() as s:
            owed = self._record_receipts(s, items)
        self._publish(publisher, owed)  # new: the copies just written (before any refusal: see `documents`)
        flush: list[str] = []
        for item in items:
            receipt = item.receipt
            if item.problem == "no_delivery":
                refuse(self.ctx, item.delivery, item.origin, "receipt_invalid",
                       f"no delivery of {receipt.message_id} to {receipt.recipient}", publisher=publisher)
            elif item.problem == "foreign":  # a receipt binds to the envelope delivered, by its digest
                refuse(self.ctx, item.delivery, item.origin, "receipt_invalid",
                       f"the receipt for {receipt.message_id} names an envelope this hub did not deliver",
                       message_id=receipt.message_id, publisher=publisher, name_in_notice=False)
            elif item.outcome is None:  # a redelivery: whatever is still owed
                flush += [item.key, f"{item.key}|stamped"]
        if flush:
            self._flush(publisher, flush)
        observer = self.ctx.observer
        for item in items:  # counted once the effect is durable, and only if it was new
            outcome = item.outcome
            if outcome is None:
                continue
            observer.receipt(item.receipt.event)
            if outcome.new_state is not None:
                observer.delivery_state(outcome.new_state)
            if outcome.latency is not None:
                (observer.delivered if item.receipt.event == "delivered" else observer.signed_for)(outcome.latency)

    def _record_receipts(self, s: Session, items: list[_Rcpt]) -> list[outbox.Row]:
        """Keep each signed receipt, move its delivery forward (never back), audit, and owe
        the sender a copy (unless the sender lies behind the link it came over) and the
        recipient its stamped copy. Core statements; one audit append for all. Sets each
        item's outcome, or its problem."""
        conn = s.connection()
        dt_ = table_of(DeliveryRow).c
        doc_ = table_of(Document).c
        rc_ = table_of(Receipt).c
        now = utcnow()
        kept: list[dict[str, Any]] = []
        entries: list[tuple[str, str, str, dict[str, Any]]] = []
        owed: list[dict[str, object]] = []
        for item in items:
            receipt = item.receipt
            row = conn.execute(
                select(dt_.id, dt_.state, dt_.delivered_at, doc_.sender, doc_.accepted_at, doc_.envelope_sha256)
                .join_from(table_of(DeliveryRow), table_of(Document), dt_.message_id == doc_.message_id)
                .where(dt_.message_id == receipt.message_id, dt_.recipient == receipt.recipient)
            ).first()
            if row is None:
                item.problem = "no_delivery"
                continue
            if row.envelope_sha256 != receipt.envelope_sha256:
                item.problem = "foreign"
                continue
            seen = conn.execute(select(rc_.id).where(rc_.message_id == receipt.message_id,
                                                     rc_.recipient == receipt.recipient,
                                                     rc_.event == receipt.event)).first()
            if seen is not None:
                continue
            latency: float | None = None
            values: dict[str, Any] = {}
            if receipt.event == "delivered":
                values["delivered_at"] = row.delivered_at or now
                latency = (now - row.accepted_at).total_seconds()
            elif receipt.event == "signed_for":
                values.update(signed_for_at=now, person=receipt.person)
                if row.delivered_at is not None:
                    latency = (now - row.delivered_at).total_seconds()
            elif receipt.event == "returned":
                values.update(returned_at=now, reason=receipt.reason, person=receipt.person)
            elif receipt.event == "refused":
                values.update(code=receipt.error, reason=receipt.reason)
            new_state = states.EVENT_STATE[receipt.event]
            advanced = states.advances(row.state, new_state)
            if advanced:
                values["state"] = new_state
                if new_state in states.FINAL:
                    values["closed_at"] = now
            if values:  # at once: a later receipt of this batch for the same delivery reads it
                conn.execute(update(table_of(DeliveryRow)).where(dt_.id == row.id).values(**values))
            kept.append({"message_id": receipt.message_id, "recipient": receipt.recipient, "event": receipt.event,
                         "reason": receipt.reason or receipt.error, "at": _parse_time(receipt.at),
                         "received_at": now, "der": item.body})
            entries.append((receipt.recipient, f"receipt.{receipt.event}", receipt.message_id,
                            {"reason": receipt.reason, "person": receipt.person, "error": receipt.error}))
            route = self.ctx.route(row.sender)
            origin = item.origin
            if route.kind != "paper" and not (origin.kind == "link" and route.link == origin.name):
                owed.append(outbox.spec(key=item.key, kind=messages.RECEIPT, route=route, address=row.sender,
                                        body=item.body))
            if item.body != item.delivery.body:
                owed.append(outbox.spec(key=f"{item.key}|stamped", kind=messages.RECEIPT,
                                        route=self.ctx.route(receipt.recipient), address=receipt.recipient,
                                        body=item.body))
            item.outcome = _ReceiptOutcome(new_state if advanced else None, latency)
        if kept:
            conn.execute(insert(table_of(Receipt)), kept)
        audit.append_many(s, entries)
        return list(outbox.add_many(s, owed))

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


