"""`docex agent run`: the unit's headless service.

Two loops share nothing but the local store: the receiver consumes the unit's own inbox
queue (worker threads, acks after the effect is durable; see receiving.py), and the sender
publishes the outbox with confirms, sends heartbeats, asks for the directory after each
(re)connect and picks up documents dropped into AGENTDIR/outbox/. Both reconnect by
themselves when RabbitMQ restarts."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import shutil
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select, update

from docex.agent.config import BROKER_CA_NAME
from docex.agent.context import AgentContext
from docex.agent.large import clean_leftovers, publish_chunks
from docex.agent.receiving import Receiver
from docex.agent.sending import draft_from_sidecar, queue_document, release_held
from docex.agent.store import Outgoing, Sent, SentRecipient, Setting, utcnow
from docex.broker import (
    BrokerError,
    BrokerSettings,
    ConfirmedPublisher,
    Consumer,
    Delivery,
    PublishItem,
)
from docex.broker.topology import (
    INGRESS_EXCHANGE,
    INGRESS_ROUTING_KEY,
    ingress_routing_key,
    unit_queue,
)
from docex.pki.errors import PkiError
from docex.protocols import messages
from docex.protocols.safepath import inside, private_dir

log = logging.getLogger(__name__)
BATCH = 200


def broker_settings(ctx: AgentContext) -> BrokerSettings:
    """The unit's login: over TLS with its client certificate (amqps://, SASL EXTERNAL)
    when the home holds one, else the password in the URL (a broker without TLS)."""
    home = ctx.config.home
    if ctx.config.broker_url.startswith("amqps:"):
        return BrokerSettings(url=ctx.config.broker_url, prefetch=ctx.config.prefetch,
                              tls_ca=str(home / BROKER_CA_NAME), tls_cert=str(home / "client.crt"),
                              tls_key=str(home / "client.key"), tls_key_password=ctx.key_password)
    return BrokerSettings(url=ctx.config.broker_url, prefetch=ctx.config.prefetch)


class OutboxPublisher:
    """Publishes the local outbox (documents, receipts) to the hub's ingress with confirms."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.user = ctx.broker_user

    def _item(self, row: Outgoing) -> PublishItem:
        return PublishItem(INGRESS_EXCHANGE, ingress_routing_key(row.kind), row.body, row.message_id, user_id=self.user,
                           type=row.kind)

    def control(self, publisher: ConfirmedPublisher, kind: str) -> None:
        # Asking for the directory, say which version we hold: the hub sends it only if newer.
        headers = ({messages.H_DIRECTORY_VERSION: str(self.ctx.directory_version())}
                   if kind == messages.DIRECTORY_REQUEST else None)
        publisher.publish_many([PublishItem(INGRESS_EXCHANGE, INGRESS_ROUTING_KEY, b"", f"{kind}|{uuid.uuid4()}",
                                            user_id=self.user, type=kind, persistent=False, headers=headers)])

    def flush(self, publisher: ConfirmedPublisher) -> int:
        with self.ctx.store.session() as s:
            rows = list(s.execute(select(Outgoing).where(Outgoing.sent_at.is_(None)).order_by(Outgoing.id).limit(BATCH)).scalars())
        if not rows:
            return 0
        publisher.publish_many([self._item(r) for r in rows])
        now = utcnow()
        docs = [r.message_id for r in rows if r.kind == messages.DOCUMENT]
        with self.ctx.store.session() as s:
            s.execute(update(Outgoing).where(Outgoing.id.in_([r.id for r in rows])).values(sent_at=now))
            if docs:
                s.execute(update(Sent).where(Sent.message_id.in_(docs), Sent.state == "queued").values(state="sent"))
                s.execute(update(SentRecipient).where(SentRecipient.message_id.in_(docs), SentRecipient.state == "queued")
                          .values(state="sent", at=now))
        for _ in docs:
            self.ctx.observer.agent_sent()
        return len(rows)


def _id_secret(ctx: AgentContext) -> bytes:
    with ctx.store.session() as s:
        row = s.get(Setting, "outbox_id_secret")
        if row is None:
            row = Setting(key="outbox_id_secret", value=secrets.token_hex(32))
            s.add(row)
        return bytes.fromhex(row.value)


def scan_outbox_folder(ctx: AgentContext) -> int:
    """Documents dropped by office systems: FILES + NAME.json sidecar in AGENTDIR/outbox/.
    The message id derives from the sidecar's bytes, so a crash between queueing and
    moving the files cannot send the document twice."""
    folder = ctx.config.outbox
    done = 0
    for sidecar in sorted(folder.glob("*.json")):
        raw = sidecar.read_bytes()
        try:
            draft = draft_from_sidecar(sidecar)
            # Keyed with this terminal's own secret: the id stays the same for the same drop
            # (crash-safe) but nobody else can predict it and squat it at the hub first.
            digest = hmac.new(_id_secret(ctx), raw + b"".join(draft.files.values()), hashlib.sha256).digest()
            message_id = str(uuid.UUID(bytes=digest[:16], version=4))
            draft = replace(draft, message_id=message_id)
            with ctx.store.session() as s:
                known = s.get(Sent, message_id) is not None
            if not known:
                queue_document(ctx, draft)
            target = inside(folder / "sent", message_id)
            failed = None
        except PkiError as exc:
            target = inside(folder / "failed", sidecar.stem)
            failed = exc
        target.mkdir(parents=True, exist_ok=True)
        names = [sidecar.name]
        try:
            names += list(json.loads(raw).get("files", []))
        except ValueError:
            pass
        for name in names:
            try:
                src = inside(folder, Path(str(name)).name)
            except PkiError:
                continue
            if src.exists() and src.is_file():
                shutil.move(str(src), target / src.name)
        if failed is not None:
            (target / "error.txt").write_text(f"[{failed.code}] {failed.message}\n", "utf-8")
            log.warning("outbox folder: %s refused: [%s] %s", sidecar.name, failed.code, failed.message)
        else:
            done += 1
    return done


class AgentService:
    def __init__(self, ctx: AgentContext, *, poll_seconds: float = 0.05, folder_seconds: float = 2.0) -> None:
        self.ctx = ctx
        self.poll_seconds = poll_seconds
        self.folder_seconds = folder_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Receipts already waiting are kept together (one transaction); the rest one by one.
        self.consumer = Consumer(broker_settings(ctx), unit_queue(ctx.creds.address), self._receive,
                                 workers=ctx.config.workers, prefetch=ctx.config.prefetch,
                                 name=f"docex-agent-{ctx.creds.address}", batch=self._receive_batch,
                                 batch_size=32)
        self._receiver = Receiver(ctx)
        self.connected = threading.Event()

    def _receive(self, delivery: Delivery) -> None:
        self._receiver(delivery)
        # A received document left a receipt in the outbox: publish it now, not at the next poll.
        self._wake.set()

    def _receive_batch(self, deliveries: list[Delivery]) -> None:
        self._receiver.batch(deliveries)
        self._wake.set()

    def wake(self) -> None:
        """Publish the outbox now (something was queued in this process)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.consumer.stop()

    def _sender_loop(self) -> None:
        outbox = OutboxPublisher(self.ctx)
        delay = 0.5
        while not self._stop.is_set():
            publisher = None
            try:
                publisher = ConfirmedPublisher.open(broker_settings(self.ctx), connection_name=f"docex-agent-out-{self.ctx.creds.address}")
                outbox.control(publisher, messages.DIRECTORY_REQUEST)
                outbox.control(publisher, messages.HEARTBEAT)
                self.connected.set()
                delay = 0.5
                beat = folder = time.monotonic()
                sent = -1  # query the outbox at once after a (re)connect
                while not self._stop.is_set():
                    # Query only when the store changed (or the last batch may have left more).
                    if sent or self.ctx.store.changed():
                        sent = outbox.flush(publisher) + publish_chunks(self.ctx, publisher, outbox.user)
                    else:
                        sent = 0
                    now = time.monotonic()
                    if now - beat >= self.ctx.config.heartbeat_seconds:
                        outbox.control(publisher, messages.HEARTBEAT)
                        beat = now
                    if now - folder >= self.folder_seconds:
                        scan_outbox_folder(self.ctx)
                        release_held(self.ctx)  # documents waiting for the directory
                        self._receiver.retry_waiting()  # documents waiting for their signer's CA
                        folder = now
                    if not sent:
                        # The publisher's own I/O thread answers heartbeats meanwhile.
                        self._wake.wait(self.poll_seconds)
                        self._wake.clear()
            except (BrokerError, OSError) as exc:
                self.connected.clear()
                log.warning("agent %s: broker unavailable (%s); retrying in %.1fs", self.ctx.creds.address, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception:  # noqa: BLE001 - the service must outlive one bad row
                log.exception("agent %s: sender loop error", self.ctx.creds.address)
                self._stop.wait(delay)
            finally:
                if publisher is not None:
                    publisher.close()

    def run(self, ready: threading.Event | None = None) -> None:
        # Half-written inbox folders of a run that was killed mid-extraction: the message
        # was not acked, so it comes again and is written whole.
        for folder in (self.ctx.config.inbox, self.ctx.config.quarantine):
            private_dir(folder)  # homes laid out before folders were made 0700
        for partial in self.ctx.config.inbox.glob(".partial-*"):
            shutil.rmtree(partial, ignore_errors=True)
        clean_leftovers(self.ctx)
        self.consumer.start()
        sender = threading.Thread(target=self._sender_loop, name="docex-agent-sender", daemon=True)
        sender.start()
        self.consumer.wait_ready(30)
        self.connected.wait(30)
        log.info("agent %s (%s) running", self.ctx.creds.address, self.ctx.config.name)
        if ready is not None:
            ready.set()
        self._stop.wait()
        sender.join(10)
        self.consumer.stop()
        self.ctx.store.dispose()
