"""Receiving: everything that arrives in the unit's own inbox queue.

A document is verified (every layer, chain, revocation, every hash, the seal), written
atomically to inbox/<message id>/, recorded, and a signed `delivered` receipt is put in
the outbox — all before the broker message is acknowledged. A redelivery is recognised by
message id and not written twice. What cannot be opened is kept in quarantine/, recorded,
reported to the hub with a named error (a signed `refused` receipt), and acknowledged.

One refusal may be only a matter of time: a signer whose CA we do not trust yet, though
our hub let the document through (it trusts that CA; our copy of its anchors lags, as when
a link was just made). Such a document is kept in the store (awaiting_trust) and acked,
the hub is asked for a fresh directory, and it is tried again whenever our trust changes;
only after `trust_wait_minutes` is it quarantined as certificate_untrusted. Each waits on
its own clock and costs nothing while nothing changes, so an unknown CA cannot make the
agent hang or loop, and other messages keep flowing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from docex.agent.context import AgentContext
from docex.agent.evidence import keep, keep_envelope
from docex.agent.sending import Resend, record_resend, repack_squatted
from docex.agent.store import (
    AwaitingTrust,
    Outgoing,
    Quarantined,
    Received,
    Sent,
    SentEvent,
    SentRecipient,
    utcnow,
)
from docex.agent.store import Notice as NoticeRow
from docex.broker import Delivery
from docex.pki.errors import PkiError, UnknownIssuer
from docex.pki.names import common_name
from docex.pki.trust import TrustStore
from docex.protocols import messages
from docex.protocols.envelope import OpenedEnvelope, open_envelope, read_header
from docex.protocols.errors import DocexError
from docex.protocols.header import RoutingHeader
from docex.protocols.logsafe import loggable
from docex.protocols.manifest import Manifest
from docex.protocols.notice import Notice, verify_notice
from docex.protocols.package import extract_to
from docex.protocols.receipt import Receipt as ReceiptStatement
from docex.protocols.receipt import envelope_digest, make_receipt, verify_receipt
from docex.protocols.safepath import create_exclusive, inside, private_dir

log = logging.getLogger(__name__)

# sender-side states, from receipts and notices
RECEIPT_STATE = {"delivered": "delivered", "signed_for": "signed_for", "returned": "returned", "refused": "rejected"}
_RANK = {"queued": 0, "waiting_for_directory": 0, "sent": 1, "routed": 2, "waiting_for_link": 2, "dead_letter": 2, "delivered": 3, "signed_for": 4,
         "returned": 4, "rejected": 4, "expired": 4, "paper_route": 4, "recalled": 4}


def _advance(row: SentRecipient, state: str, at: dt.datetime) -> None:
    # A signed_for that crossed our recall wins: the recipient signed first and keeps it.
    if _RANK.get(state, 0) > _RANK.get(row.state, 0) or (row.state == "recalled" and state == "signed_for"):
        row.state = state
        row.at = at


def _utc(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # SQLite gives times back naive


class Receiver:
    """The handler of the agent's inbox queue. Thread-safe."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self._retry_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._tried_with: TrustStore | None = None  # the trust the waiting documents last failed under
        self._arrivals = 0  # documents set waiting by this process
        self._none_after = -1  # _arrivals when the table was last found empty: no need to look again

    def __call__(self, delivery: Delivery) -> None:
        kind = delivery.properties.type or messages.DOCUMENT
        if kind == messages.DOCUMENT:
            self.document(delivery.body)
        elif kind == messages.CHUNK:
            from docex.agent.large import receive_chunk

            receive_chunk(self.ctx, self, delivery)
        elif kind == messages.RECEIPT:
            self.receipt(delivery.body)
        elif kind == messages.NOTICE:
            self.notice(delivery.body)
        elif kind == messages.DIRECTORY:
            self.directory(delivery.body)
        elif kind == messages.DIRECTORY_DELTA:
            self.directory_delta(delivery.body)
        elif kind == messages.SEAL:
            self.seal(delivery.body)
        elif kind == messages.RECALL:
            from docex.agent.recall import apply_recall

            apply_recall(self.ctx, delivery.body)
        else:
            log.warning("ignored a message of unknown type %s", loggable(kind, 40))

    # -- documents --------------------------------------------------------------------------
    def document(self, body: bytes, *, now: dt.datetime | None = None) -> None:
        ctx = self.ctx
        digest = envelope_digest(body)
        try:
            header = read_header(body)
        except PkiError as exc:
            self._quarantine(body, "", digest, exc)
            return
        with ctx.store.session() as s:
            if (s.get(Received, header.message_id) is not None  # a redelivery: already stored and receipted
                    or s.execute(select(Quarantined.id).where(Quarantined.digest == digest)).first()):
                s.execute(delete(AwaitingTrust).where(AwaitingTrust.digest == digest))
                return
        try:
            opened = open_envelope(body, ctx.creds, ctx.trust, max_size=ctx.config.max_envelope_bytes)
            opened.manifest.validate()  # the recipient holds the sender to the rules too (classification...)
            if opened.chunk_key is not None:  # a large document: complete once its chunks are here
                from docex.agent.large import envelope_arrived

                envelope_arrived(ctx, self, body, header.message_id)
                return
            seal_status = self._check_seal(opened.files, opened.manifest)
            target = inside(ctx.config.inbox, header.message_id)
        except PkiError as exc:
            # Only the envelope's signer under a CA we do not know can be cured by our hub's
            # next snapshot; any other untrusted certificate (a PDF seal, a chain too long)
            # is final at once.
            if isinstance(exc, UnknownIssuer) and self._await_trust(body, header, digest, now or utcnow()):
                return
            self._quarantine(body, header.message_id, digest, exc)
            return
        extract_to(target, opened.files, extra={"manifest.json": opened.manifest.to_json()})
        self._record(body, digest, opened, seal_status, target)

    def _record(self, body: bytes, digest: str, opened: OpenedEnvelope, seal_status: str, target: Path) -> None:
        """The document is in its inbox folder: record it and queue the signed receipt."""
        ctx, header = self.ctx, opened.header
        _, receipt = make_receipt(
            message_id=header.message_id, recipient=ctx.creds.address, event="delivered",
            envelope_sha256=digest, cert=ctx.creds.sign_cert, key=ctx.creds.sign_key,
        )
        m = opened.manifest
        with ctx.store.session() as s:
            s.execute(delete(AwaitingTrust).where(AwaitingTrust.digest == digest))
            if s.get(Received, header.message_id) is not None:
                return
            s.add(Received(
                message_id=m.message_id, sender=m.sender, sender_name=common_name(opened.signer), title=m.title,
                doc_number=m.doc_number, priority=m.priority, path=str(target), envelope_sha256=digest,
                seal_status=seal_status,
            ))
            s.add(Outgoing(kind=messages.RECEIPT, message_id=messages.receipt_key(m.message_id, ctx.creds.address, "delivered"),
                           body=receipt))
            keep_envelope(s, message_id=m.message_id, role="received", envelope=body, inner=opened.inner or None)
            keep(s, message_id=m.message_id, event="delivered", issuer=ctx.creds.address, direction="sent", der=receipt)
        ctx.observer.agent_received()
        log.info("received %s %s from %s", m.message_id, loggable(m.doc_number), loggable(m.sender))
        from docex.agent.recall import recall_waiting

        if recall_waiting(ctx, m.message_id):
            log.info("%s had been recalled by its sender before it arrived", m.message_id)

    # -- documents whose signer's CA reaches us later ----------------------------------------
    def _await_trust(self, body: bytes, header: RoutingHeader, digest: str, now: dt.datetime) -> bool:
        """Keep a document whose signer's CA we do not trust (yet); True while it may wait,
        False once its time is over (it is then quarantined)."""
        message_id = header.message_id
        wait = dt.timedelta(minutes=self.ctx.config.trust_wait_minutes)
        with self.ctx.store.session() as s:
            row = s.get(AwaitingTrust, digest)
            if row is not None:
                return now - _utc(row.since) < wait
        if wait <= dt.timedelta(0):
            return False
        try:
            header.validate()  # its cover is shown while it waits: in its allowed forms only
        except DocexError:
            return False
        # The cover is not verified by us yet (our hub did verify it); the name is our directory's.
        entry = self.ctx.lookup(header.sender)
        with self.ctx.store.session() as s:
            if s.get(AwaitingTrust, digest) is not None:
                return True  # another worker took the same redelivery in between
            s.add(AwaitingTrust(digest=digest, message_id=message_id, body=body, since=now, sender=header.sender,
                                sender_name=entry.name if entry is not None else "", title=header.title,
                                doc_number=header.doc_number, priority=header.priority))
            # Our hub trusts the CA (it routed the document): its current snapshot carries it.
            # One request a minute, however many documents wait.
            key = f"{messages.DIRECTORY_REQUEST}|trust|{int(now.timestamp()) // 60}"
            if not s.execute(select(Outgoing.id).where(Outgoing.message_id == key)).first():
                s.add(Outgoing(kind=messages.DIRECTORY_REQUEST, message_id=key, body=b""))
        with self._count_lock:
            self._arrivals += 1
        log.warning("%s waits for its signer's CA (not trusted here yet; asked the hub for its directory), "
                    "at most %g min", message_id, self.ctx.config.trust_wait_minutes)
        return True

    def retry_waiting(self, now: dt.datetime | None = None) -> int:
        """Try the documents waiting for their signer's CA again: every one when our trust
        changed since the last try, else those whose wait is over (which are quarantined).
        Returns how many were tried. Nearly free when nothing waits."""
        with self._count_lock:
            arrivals = self._arrivals
        if arrivals == self._none_after:
            return 0
        now = now or utcnow()
        wait = dt.timedelta(minutes=self.ctx.config.trust_wait_minutes)
        with self._retry_lock:
            trust = self.ctx.trust
            changed = trust is not self._tried_with
            with self.ctx.store.session() as s:
                rows = s.execute(select(AwaitingTrust.digest, AwaitingTrust.since)).all()
            if not rows:
                self._none_after = arrivals
            due = [digest for digest, since in rows if changed or now - _utc(since) >= wait]
            for digest in due:
                with self.ctx.store.session() as s:
                    row = s.get(AwaitingTrust, digest)
                    body = row.body if row is not None else None
                if body is not None:
                    self.document(body, now=now)  # delivered, waiting on, or quarantined
            self._tried_with = trust
        return len(due)

    def _check_seal(self, files: dict[str, bytes], manifest: Manifest) -> str:
        """Every seal of every PDF of the package (by name or by content) must verify and be
        the sender's: 'valid' if any is sealed, 'none' if none is."""
        if not self.ctx.config.seal.verify:
            return "unchecked"
        from docex.agent.sealing import verify_pdf_seals

        status = "none"
        for name, data in files.items():
            is_pdf = name.lower().endswith(".pdf") or data[:1024].lstrip().startswith(b"%PDF")
            if is_pdf and verify_pdf_seals(self.ctx, data, expected_address=manifest.sender) == "valid":
                status = "valid"
        return status

    def _quarantine(self, body: bytes, message_id: str, digest: str, exc: PkiError) -> None:
        ctx = self.ctx
        folder = ctx.config.quarantine
        private_dir(folder)
        path = self._quarantine_file(folder, f"{message_id or 'unknown'}-{digest[:16]}", body)
        create_exclusive(path.with_suffix(".json"), json.dumps(
            {"message_id": message_id, "code": exc.code, "message": exc.message, "at": utcnow().isoformat()},
            ensure_ascii=False, indent=1).encode("utf-8"))
        with ctx.store.session() as s:
            s.execute(delete(AwaitingTrust).where(AwaitingTrust.digest == digest))
            if s.execute(select(Quarantined.id).where(Quarantined.digest == digest)).first():
                return
            s.add(Quarantined(message_id=message_id, digest=digest, code=exc.code, message=exc.message, path=str(path)))
            if message_id:
                _, receipt = make_receipt(
                    message_id=message_id, recipient=ctx.creds.address, event="refused", envelope_sha256=digest,
                    cert=ctx.creds.sign_cert, key=ctx.creds.sign_key, reason=exc.message, error=exc.code,
                )
                key = messages.receipt_key(message_id, ctx.creds.address, f"refused-{digest[:12]}")
                s.add(Outgoing(kind=messages.RECEIPT, message_id=key, body=receipt))
                keep(s, message_id=message_id, event="refused", issuer=ctx.creds.address, direction="sent", der=receipt)
        ctx.observer.agent_quarantined(exc.code)
        log.warning("quarantined %s: [%s] %s", loggable(message_id) or digest[:16], exc.code, loggable(exc.message, 500))

    @staticmethod
    def _quarantine_file(folder: Path, stem: str, body: bytes) -> Path:
        """A new `STEM[-N].env` (and its `.json` name free): never replaces a file. The stem is
        our own digest and an id already proved a UUID, and `inside` proves it anyway."""
        for n in range(1000):
            path = inside(folder, f"{stem}{'' if n == 0 else f'-{n}'}.env")
            if path.with_suffix(".json").exists():
                continue
            try:
                create_exclusive(path, body)
            except FileExistsError:
                continue
            return path
        raise DocexError("io_error", f"no free quarantine name for {stem}")

    # -- what comes back to the sender ---------------------------------------------------------
    def receipt(self, body: bytes) -> None:
        self.receipts([body])

    def receipts(self, bodies: list[bytes]) -> None:
        """Receipts, each verified, all kept in one transaction with the states they move (one
        commit and fsync: a sender collecting a broadcast's 125 receipts waited for each)."""
        verified: list[tuple[ReceiptStatement, bytes]] = []
        for body in bodies:
            try:
                receipt, _ = verify_receipt(body, self.ctx.trust)
            except PkiError as exc:
                log.warning("ignored an invalid receipt: [%s] %s", exc.code, loggable(exc.message, 500))
                continue
            verified.append((receipt, body))
        if not verified:
            return
        with self.ctx.store.session() as s:
            for receipt, body in verified:
                self._apply_receipt(s, receipt, body)

    def batch(self, deliveries: list[Delivery]) -> None:
        """The consumer's batch handler: receipts together, notices together (one transaction
        each), the rest one by one."""
        together = (messages.RECEIPT, messages.NOTICE)
        for delivery in deliveries:
            if delivery.properties.type not in together:
                self(delivery)
        receipts = [d.body for d in deliveries if d.properties.type == messages.RECEIPT]
        notices = [d.body for d in deliveries if d.properties.type == messages.NOTICE]
        if receipts:
            self.receipts(receipts)
        if notices:
            self.notices(notices)

    @staticmethod
    def _apply_receipt(s: Session, receipt: ReceiptStatement, body: bytes) -> None:
        # every receipt is evidence, our own stamped copies too
        if s.get(Sent, receipt.message_id) is not None or s.get(Received, receipt.message_id) is not None:
            keep(s, message_id=receipt.message_id, event=receipt.event, issuer=receipt.recipient,
                 direction="received", der=body)
        state = RECEIPT_STATE.get(receipt.event)
        if state is None:
            return
        row = s.execute(select(SentRecipient).where(SentRecipient.message_id == receipt.message_id,
                                                    SentRecipient.recipient == receipt.recipient)).scalar_one_or_none()
        if row is None:
            return
        _advance(row, state, utcnow())
        if not s.execute(select(SentEvent.id).where(SentEvent.message_id == receipt.message_id,
                                                    SentEvent.recipient == receipt.recipient,
                                                    SentEvent.event == receipt.event)).first():
            s.add(SentEvent(message_id=receipt.message_id, recipient=receipt.recipient, event=receipt.event,
                            person=receipt.person, reason=receipt.reason or receipt.error))
        if receipt.event in ("returned", "refused"):
            row.reason = receipt.reason
            row.code = receipt.error
        if receipt.event in ("delivered", "signed_for", "returned") and (row.receipt is None or receipt.event != "delivered"):
            row.receipt = body

    def notice(self, body: bytes) -> None:
        self.notices([body])

    def notices(self, bodies: list[bytes]) -> None:
        """Notices, each verified, all kept in one transaction with the states they move."""
        verified: list[tuple[Notice, bytes]] = []
        for body in bodies:
            try:
                verified.append((verify_notice(body, self.ctx.trust), body))
            except PkiError as exc:
                log.warning("ignored an invalid notice: [%s] %s", exc.code, loggable(exc.message, 500))
        if not verified:
            return
        resends = {hashlib.sha256(body).hexdigest(): r for notice, body in verified
                   if (r := self._squatted_resend(notice)) is not None}
        with self.ctx.store.session() as s:
            fresh = [notice for notice, body in verified
                     if self._apply_notice(s, notice, body, resends.get(hashlib.sha256(body).hexdigest()))]
        for notice in fresh:
            if notice.event == "recalled":
                from docex.agent.recall import recalled_notice

                recalled_notice(self.ctx, notice)
            log.info("notice for %s: %s [%s] %s", loggable(notice.message_id), loggable(notice.event),
                     loggable(notice.code), loggable(notice.message, 500))

    def _squatted_resend(self, notice: Notice) -> Resend | None:
        """Our document, refused because another unit holds its id (a `duplicate` naming
        recipients), packed again under a new id for the copies that did not go; packed
        before the notice's transaction, recorded in it (or dropped if it was kept before)."""
        if notice.code != "duplicate" or notice.event != "rejected" or not notice.recipients:
            return None
        with self.ctx.store.session() as s:
            if s.get(Sent, notice.message_id) is None:
                return None
            unsent = [r.recipient for r in s.execute(select(SentRecipient).where(
                SentRecipient.message_id == notice.message_id, SentRecipient.recipient.in_(notice.recipients),
                SentRecipient.state.in_(("queued", "sent")))).scalars()]
        return repack_squatted(self.ctx, notice.message_id, unsent) if unsent else None

    @staticmethod
    def _apply_notice(s: Session, notice: Notice, body: bytes, resend: Resend | None = None) -> bool:
        """Keep one notice and move what it concerns; False for one kept before."""
        digest = hashlib.sha256(body).hexdigest()
        if s.execute(select(NoticeRow.id).where(NoticeRow.digest == digest)).first():
            return False  # a redelivery
        s.add(NoticeRow(message_id=notice.message_id, event=notice.event, code=notice.code,
                        message=notice.message, digest=digest, der=body))
        sent = s.get(Sent, notice.message_id)
        # A refusal moves only copies the hub has not yet taken (queued/sent): a notice can
        # never undo a document the hub accepted and routed (a tampered copy of it refused).
        unsent = (select(SentRecipient).where(SentRecipient.message_id == notice.message_id,
                                              SentRecipient.state.in_(("queued", "sent"))))
        if notice.code == "duplicate" and notice.event == "rejected":
            # Named recipients: another unit holds this id and our document did not go.
            # None named: a replay of our own id was refused; what the hub accepted stands.
            # Our document then goes again at once under a new id (`resend`, packed for
            # exactly the copies this notice moves): the squatter cannot stop it.
            if notice.recipients and sent is not None:
                moved = list(s.execute(unsent.where(SentRecipient.recipient.in_(notice.recipients))).scalars())
                again = resend is not None and set(resend.recipients) == {r.recipient for r in moved}
                if again:
                    assert resend is not None
                    record_resend(s, resend)
                for row in moved:
                    _advance(row, "rejected", utcnow())
                    row.code, row.reason = notice.code, notice.message
                    if again:
                        assert resend is not None
                        row.reason = (f"公文编号已被其他单位占用，已以新编号 {resend.message_id} 重新发送"
                                      f"（message id held by another unit; sent again as {resend.message_id}）")
                        s.add(SentEvent(message_id=notice.message_id, recipient=row.recipient, event="resent",
                                        reason=resend.message_id))
                    sent.state = "duplicate"
        elif notice.event == "rejected" and sent is not None:
            for row in s.execute(unsent).scalars():
                _advance(row, "rejected", utcnow())
                row.code = notice.code
                row.reason = notice.message
                sent.state = "rejected"
        elif notice.event in ("paper_route", "expired", "waiting_for_link", "dead_letter"):
            concerns = select(SentRecipient).where(SentRecipient.message_id == notice.message_id)
            if notice.recipients or notice.event != "dead_letter":  # a dead letter may concern them all
                concerns = concerns.where(SentRecipient.recipient.in_(notice.recipients))
            for row in s.execute(concerns).scalars():
                _advance(row, notice.event, utcnow())
                row.code = notice.code
                row.reason = notice.message
        elif notice.event == "reminder" and sent is not None:
            for address in notice.recipients:
                count = len(s.execute(select(SentEvent.id).where(
                    SentEvent.message_id == notice.message_id, SentEvent.recipient == address,
                    SentEvent.event.like("reminder%"))).all())
                s.add(SentEvent(message_id=notice.message_id, recipient=address, event=f"reminder#{count + 1}",
                                reason=notice.message))
        return True

    def directory(self, body: bytes) -> None:
        try:
            snap = self.ctx.accept_directory(body)
        except PkiError as exc:
            log.warning("refused a directory snapshot: [%s] %s", exc.code, loggable(exc.message, 500))
            return
        if snap is not None:
            log.info("directory %s v%d: %d units", snap.prefix, snap.version, len(snap.units))
            self.retry_waiting()  # it may have brought the CA a waiting document was signed under


    def directory_delta(self, body: bytes) -> None:
        """A change of our hub's directory. One we cannot apply (we missed the one before) is
        kept, and the whole snapshot asked for, once per version we hold."""
        try:
            outcome = self.ctx.accept_delta(body)
        except PkiError as exc:
            log.warning("refused a directory delta: [%s] %s", exc.code, loggable(exc.message, 500))
            return
        if outcome.snapshot is not None:
            log.info("directory %s v%d (delta): %d units", outcome.snapshot.prefix, outcome.snapshot.version,
                     len(outcome.snapshot.units))
        if outcome.ask_whole:
            key = f"{messages.DIRECTORY_REQUEST}|whole|{self.ctx.directory_version()}"
            with self.ctx.store.session() as s:
                if not s.execute(select(Outgoing.id).where(Outgoing.message_id == key)).first():
                    s.add(Outgoing(kind=messages.DIRECTORY_REQUEST, message_id=key, body=b""))

    def seal(self, body: bytes) -> None:
        """A registered seal impression (印模) for this unit, signed by the hub."""
        from docex.agent.sealing import accept_seal_registration

        try:
            accept_seal_registration(self.ctx, body)
        except DocexError as exc:
            log.warning("refused a seal registration: [%s] %s", exc.code, loggable(exc.message, 500))

