"""The hub's clocks (APScheduler): directory publication, receipt deadlines with
reminders and escalation, delivery expiry, CRL publication, certificate-expiry warnings,
rollout phases, the periodic usage report, and the archives kept renewed (sealed PDFs,
evidence bundles)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session

from docex.broker import ConfirmedPublisher, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE, link_routing_key
from docex.hub import audit, broker, links, outbox, states
from docex.hub import directory as hub_directory
from docex.hub import evidence as hub_evidence
from docex.hub.context import HubContext
from docex.hub.job_outages import JobOutageLog
from docex.hub.models import Delivery, Document, Outbox, Unit, utcnow
from docex.protocols import localtime, messages
from docex.protocols.durable import write_durably
from docex.protocols.notice import make_notice

log = logging.getLogger(__name__)
CHECKPOINT_MINUTES = 10  # entries newer than the last checkpoint are exposed at most this long


@dataclass(frozen=True)
class Rollout:
    """The county plan's phases: pilot units (the administration building) first, then
    every unit on paper and electronic side by side, then electronic only."""

    pilot_start: dt.date | None = None
    dual_track_start: dt.date | None = None
    electronic_start: dt.date | None = None

    def phase_on(self, day: dt.date, *, pilot_group: bool) -> str | None:
        if self.electronic_start and day >= self.electronic_start:
            return "electronic"
        if self.dual_track_start and day >= self.dual_track_start:
            return "dual_track"
        if self.pilot_start and day >= self.pilot_start and pilot_group:
            return "pilot"
        return None


class HubJobs:
    """Each job opens what it needs, does one bounded sweep and returns; a failure is
    logged and retried at the next tick, never fatal to the hub."""

    def __init__(self, ctx: HubContext, *, rollout: Rollout | None = None) -> None:
        self.ctx = ctx
        self.rollout = rollout or Rollout()
        self._publisher: ConfirmedPublisher | None = None
        self._revoked_seen: set[str] = set()
        self._archive_failed: set[str] = set()  # documents the evidence archive cannot export (said once)

    def publisher(self) -> ConfirmedPublisher:
        if self._publisher is None or not self._publisher.is_open:
            self._publisher = ConfirmedPublisher.open(broker.settings(self.ctx.config), connection_name="docex-hub-jobs")
        return self._publisher

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()

    # -- directory ---------------------------------------------------------------------------
    def publish_directory(self, *, force: bool = False) -> int:
        """Send what changed since the last publication to every enabled unit, as a signed
        delta from the version published last (the whole snapshot when that one is not known
        here, or with `force`), and the whole snapshot over every link. Returns the copies sent."""
        with self.ctx.db.read() as s:
            crls_changed = hub_directory.crls_changed(s, self.ctx.identity)
        if crls_changed:
            with self.ctx.db.session() as s:
                hub_directory.note_crls(s, self.ctx.identity)
        prefix = self.ctx.config.prefix
        with self.ctx.db.read() as s:
            current, published = hub_directory.version(s), hub_directory.published_version(s)
            if not force and current <= published:
                return 0
            snap, der = hub_directory.current_snapshot(s, prefix, self.ctx.identity, self.ctx.child_prefixes())
            targets = [u for u in s.execute(select(Unit.address).where(Unit.state == "enabled")).scalars()]
        previous = None if force else hub_directory.load_published(self.ctx.config.home, published)
        if previous is not None and previous.prefix == prefix and previous.version < snap.version:
            body, kind = hub_directory.signed_delta(previous, snap, self.ctx.identity), messages.DIRECTORY_DELTA
            key = f"directory-delta|{prefix}|{previous.version}|{snap.version}"
        else:
            body, kind, key = der, messages.DIRECTORY, f"directory|{prefix}|{snap.version}"
        items = [PublishItem(DELIVER_EXCHANGE, address, body, f"{key}|{address}", type=kind) for address in targets]
        items += [
            PublishItem(DELIVER_EXCHANGE, link_routing_key(name), der, f"directory|{prefix}|{snap.version}|{name}",
                        type=messages.DIRECTORY)
            for name in self.ctx.links()
        ]
        self.publisher().publish_many(items)
        hub_directory.save_published(self.ctx.config.home, snap)
        with self.ctx.db.session() as s:
            hub_directory.mark_published(s, snap.version)
        log.info("directory v%d published to %d units (%s, %d bytes) and %d links", snap.version, len(targets),
                 "delta" if kind == messages.DIRECTORY_DELTA else "whole", len(body), len(items) - len(targets))
        return len(items)

    # -- deadlines and expiry ------------------------------------------------------------------
    def _notice(self, message_id: str, event: str, code: str, text: str, recipients: tuple[str, ...]) -> bytes:
        _, der = make_notice(message_id=message_id, event=event, code=code, message=text, recipients=recipients,
                             hub=self.ctx.config.prefix, cert=self.ctx.identity.cert, key=self.ctx.identity.key)
        return der

    @staticmethod
    def _unit_name(s: Session, address: str) -> str:
        unit = s.get(Unit, address)
        return f"{unit.name}（{address}）" if unit is not None and unit.name else address

    def sweep_deadlines(self) -> int:
        """Remind recipients who have not signed for a document by its deadline (and tell
        the sender: escalation), once per deadline period."""
        now = utcnow()
        keys: list[str] = []
        with self.ctx.db.session() as s:
            rows = s.execute(
                select(Delivery, Document).join(Document, Document.message_id == Delivery.message_id)
                .where(Delivery.state.in_((states.ROUTED, states.DELIVERED)), Document.deadline < now)
                .limit(1000)
            ).tuples().all()
            for delivery, doc in rows:
                if doc.deadline is None:
                    continue
                # one reminder per deadline period: at the deadline, then each period after
                due = doc.deadline + (doc.deadline - doc.accepted_at) * delivery.reminders
                if now < due:
                    continue
                delivery.reminders += 1
                deadline = localtime.show(doc.deadline, seconds=False)
                # the recipient is asked to sign; the sender is told who has not (escalation)
                to_recipient = (f"《{doc.title}》{doc.doc_number} 已超过签收时限（{deadline}），请尽快签收 "
                                f"(overdue since {deadline}: please sign for it; reminder {delivery.reminders})")
                name = self._unit_name(s, delivery.recipient)
                to_sender = (f"收文单位 {name} 未在签收时限（{deadline}）内签收《{doc.title}》{doc.doc_number}，"
                             f"已第 {delivery.reminders} 次催办 (recipient {name} has not signed for it by the deadline; "
                             f"reminder {delivery.reminders} sent)")
                key = messages.notice_key(doc.message_id, "reminder", f"{delivery.recipient}|{delivery.reminders}")
                for address, text in ((delivery.recipient, to_recipient), (doc.sender, to_sender)):
                    route = self.ctx.route(address)
                    if route.kind != "paper":
                        der = self._notice(doc.message_id, "reminder", "overdue", text, (delivery.recipient,))
                        outbox.add(s, key=key, kind=messages.NOTICE, route=route, address=address, body=der)
                audit.append(s, "hub", "delivery.reminder", doc.message_id, recipient=delivery.recipient,
                             reminders=delivery.reminders)
                keys.append(key)
        return self._flush(keys)

    def sweep_expired(self) -> int:
        """Deliveries not delivered within the expiry window end as `expired`."""
        cutoff = utcnow() - dt.timedelta(hours=self.ctx.config.limits.expire_hours)
        keys: list[str] = []
        with self.ctx.db.session() as s:
            rows = s.execute(
                select(Delivery, Document).join(Document, Document.message_id == Delivery.message_id)
                .where(Delivery.state.in_((states.ACCEPTED, states.ROUTED)), Document.accepted_at < cutoff)
                .limit(1000)
            ).tuples().all()
            for delivery, doc in rows:
                delivery.state = states.EXPIRED
                delivery.closed_at = utcnow()
                name = self._unit_name(s, delivery.recipient)
                der = hub_evidence.issue(
                    self.ctx, s, message_id=doc.message_id, event="expired", envelope_sha256=doc.envelope_sha256,
                    recipients=(delivery.recipient,),
                    message=f"收文单位 {name} 未在时限内接收《{doc.title}》{doc.doc_number}，投递已过期 "
                            f"(recipient {name} did not take delivery in time: expired)")
                key = messages.notice_key(doc.message_id, "expired", delivery.recipient)
                route = self.ctx.route(doc.sender)
                if route.kind != "paper":
                    outbox.add(s, key=key, kind=messages.NOTICE, route=route, address=doc.sender, body=der)
                audit.append(s, "hub", "delivery.expired", doc.message_id, recipient=delivery.recipient)
                self.ctx.observer.delivery_state(states.EXPIRED)
                keys.append(key)
        return self._flush(keys)

    def relay_outbox(self, *, older_than: float = 10.0) -> int:
        """Publish outbox rows nobody published: written by the CLI (seal registrations)
        or left by a worker that died between commit and publish."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than)
        held = links.held_keys(self.ctx.db)  # rows for paused/draining links wait
        with self.ctx.db.read() as s:
            rows = list(s.execute(
                select(Outbox).where(Outbox.published_at.is_(None), Outbox.created_at < cutoff,
                                     Outbox.routing_key.not_in(held)).order_by(Outbox.id).limit(500)
            ).scalars())
        count = outbox.deliver(self.ctx.db, self.publisher(), rows, self.ctx.observer, store=self.ctx.content)
        if count:
            log.info("outbox relay published %d message(s)", count)
        return count

    def content_housekeeping(self) -> list[str]:
        """The content store: envelopes an earlier release kept in the database move to it;
        the content of documents closed longer than the retention period goes (evidence and
        audit stay); files nothing names go. Returns the message ids purged."""
        from docex.hub import chunks, content_store

        store = self.ctx.content
        chunks.expire_held(self.ctx)
        content_store.adopt_legacy(self.ctx.db, store)
        purged = content_store.purge(self.ctx.db, store, retention_days=self.ctx.config.limits.content_retention_days)
        content_store.sweep_orphans(self.ctx.db, store)
        return purged

    def release_held_chunks(self) -> int:
        """Chunks that came before their envelope, passed on once it is accepted."""
        from docex.hub import chunks

        with self.ctx.db.read() as s:
            if s.execute(select(chunks.HeldChunk.id).limit(1)).first() is None:
                return 0
        return chunks.release_held(self.ctx, self.publisher())

    def link_housekeeping(self) -> dict[str, int]:
        """Links: drained ones pause, senders hear of documents waiting for a link that is down."""
        return links.housekeeping(self.ctx, self.publisher())

    def _flush(self, keys: list[str]) -> int:
        return outbox.flush(self.ctx.db, self.publisher(), keys, self.ctx.observer, store=self.ctx.content)

    # -- PKI housekeeping -------------------------------------------------------------------------
    def publish_crl(self) -> Path | None:
        from docex.pki.ca import CertificateAuthority

        try:
            ca = CertificateAuthority.open(self.ctx.config.ca_dir, self.ctx.config.keys.passphrase())
        except Exception as exc:  # noqa: BLE001 - an imported CA may have no key here
            log.info("CRL not re-published: %s", exc)
            return None
        path = ca.publish_crl()
        with self.ctx.db.session() as s:
            audit.append(s, "hub", "crl.publish", str(path))
        return path

    def enforce_revocations(self) -> list[str]:
        """A revoked TLS client certificate binds at the broker within seconds: the CRL goes to
        the broker first (its next handshake fails), then its login's connections are closed.
        Returns the broker users whose connections were closed."""
        from docex.hub.broker_tls import push_crl
        from docex.pki.ca import read_records

        config = self.ctx.config
        if not config.broker.tls_port:
            return []
        push_crl(config)
        revoked = {r.serial: r.holder for r in read_records(config.ca_dir) if r.role == "client" and r.status == "revoked"}
        new = set(revoked) - self._revoked_seen
        if not new:
            return []
        users = sorted({revoked[serial] for serial in new})
        with broker.management(config) as mgmt:
            for user in users:
                mgmt.close_user_connections(user, "certificate revoked by the information centre")
        with self.ctx.db.session() as s:
            for user in users:
                audit.append(s, "hub", "broker.revoked_login_closed", user)
        self._revoked_seen |= new
        log.info("revoked certificates: closed the broker connections of %s", ", ".join(users))
        return users

    def warn_expiring_certificates(self, days: int = 30) -> list[str]:
        limit = utcnow() + dt.timedelta(days=days)
        with self.ctx.db.session() as s:
            units = s.execute(select(Unit).where(Unit.cert_not_after < limit)).scalars().all()
            addresses = [u.address for u in units]
            for address in addresses:
                audit.append(s, "hub", "certificate.expiring", address)
        if addresses:
            log.warning("certificates expiring within %d days: %s", days, ", ".join(addresses))
        return addresses

    # -- rollout -------------------------------------------------------------------------------
    def apply_rollout(self, today: dt.date | None = None) -> int:
        from docex.hub.units import set_phase

        day = today or localtime.today()
        changed = 0
        with self.ctx.db.session() as s:
            units = [(u.address, u.building) for u in s.execute(select(Unit)).scalars()]
        for address, building in units:
            phase = self.rollout.phase_on(day, pilot_group=building == "admin_building")
            if phase is not None and set_phase(self.ctx.db, address, phase, actor="rollout-plan"):
                changed += 1
        return changed

    def checkpoint_audit(self) -> bool:
        """A signed, timestamped checkpoint of the audit chain when anything was audited
        since the last one (docex.hub.checkpoints)."""
        from docex.hub import checkpoints

        identity = self.ctx.identity
        return checkpoints.make(self.ctx.config, self.ctx.db, identity.cert, identity.key, self.ctx.stamper,
                                "interval", only_if_changed=True) is not None

    def renew_seal_archive(self, margin_days: int = 60) -> list[str]:
        """PAdES LTA renewal of every sealed PDF under ``[hub] seal_archive`` whose newest
        timestamp's certificate expires within ``margin_days`` (``docex seal renew``, with
        the hub's own TSA and trust). Each file is replaced atomically; every renewal and
        failure is audited. Returns the renewed files (relative to the folder)."""

        from docex.pki.errors import PkiError
        from docex.pki.seal import renew_seal, verify_seals
        from docex.pki.tsa import TimeStampAuthority

        config = self.ctx.config
        if not config.seal_archive:
            return []
        root = Path(config.seal_archive)
        root = root if root.is_absolute() else config.home / root
        if not root.is_dir():
            log.warning("seal archive %s does not exist: nothing renewed", root)
            return []
        trust = self.ctx.identity.trust
        stamper = None
        margin = dt.timedelta(days=margin_days)
        renewed: list[str] = []
        for path in sorted(root.rglob("*.pdf")):
            name = str(path.relative_to(root))
            pdf = path.read_bytes()
            report = verify_seals(pdf, trust.anchors, trust.crls, long_term=True, renewal_margin=margin, require_crl=False)
            if report.error != "seal_renewal_needed":
                continue
            try:
                if stamper is None:
                    stamper = TimeStampAuthority.load(config.home / "tsa", config.keys.passphrase()).timestamper()
                out = renew_seal(pdf, anchors=trust.anchors, crls=trust.crls, timestamper=stamper)
            except PkiError as exc:
                log.warning("seal archive: %s not renewed: [%s] %s", name, exc.code, exc.message)
                with self.ctx.db.session() as s:
                    audit.append(s, "hub", "seal.renew_failed", f"{name} [{exc.code}]")
                continue
            write_durably(path, out, mode=0o644)  # a crash leaves the old file or the new one, never half
            with self.ctx.db.session() as s:
                audit.append(s, "hub", "seal.renewed", name)
            renewed.append(name)
        if renewed:
            log.info("seal archive: renewed %d file(s)", len(renewed))
        return renewed

    def archive_evidence(self) -> list[str]:
        """``[hub] evidence_archive``: write the evidence bundle of every document that reached
        a final state since the last sweep (docex.hub.evidence_archive). Returns the ids."""
        from docex.hub import evidence_archive

        root = evidence_archive.folder(self.ctx)
        if root is None:
            return []
        if self.ctx.stamper is None:
            log.warning("evidence archive: this hub runs no TSA (HUBDIR/tsa): no bundle written")
            return []
        result = evidence_archive.sweep(self.ctx, root, self.ctx.stamper, skip=self._archive_failed)
        if result.stopped:
            log.warning("evidence archive: stopped until the next run: %s", result.stopped)
        return result.written

    def renew_evidence_archive(self, margin_days: int = 180) -> list[str]:
        """Renew every bundle under ``[hub] evidence_archive`` whose newest archive timestamp's
        certificate expires within ``margin_days``: current CRLs and CA certificates, then a
        timestamp of the hub's TSA, each file replaced atomically and audited. Returns the
        renewed files (relative to the folder)."""
        from docex.hub import evidence_archive

        root = evidence_archive.folder(self.ctx)
        if root is None or not root.is_dir():
            return []
        if self.ctx.stamper is None:
            log.warning("evidence archive: this hub runs no TSA (HUBDIR/tsa): nothing renewed")
            return []
        result = evidence_archive.renew_due(self.ctx, root, self.ctx.stamper, self.ctx.config.keys.passphrase(),
                                            margin=dt.timedelta(days=margin_days))
        return result.renewed

    def monthly_report(self) -> Path:
        from docex.hub.reports import write_report

        first, last = localtime.previous_month()  # on 1 December (local): November
        return write_report(self.ctx, first, last)


def build_scheduler(jobs: HubJobs) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=localtime.zone(), job_defaults={"coalesce": True, "max_instances": 1})
    JobOutageLog().install(scheduler)  # an outage: one line, not a traceback per job run
    scheduler.add_job(jobs.publish_directory, "interval", seconds=5, id="directory")
    scheduler.add_job(jobs.relay_outbox, "interval", seconds=5, id="outbox-relay")
    scheduler.add_job(jobs.link_housekeeping, "interval", seconds=5, id="links")
    scheduler.add_job(jobs.sweep_deadlines, "interval", seconds=60, id="deadlines")
    scheduler.add_job(jobs.sweep_expired, "interval", seconds=60, id="expiry")
    scheduler.add_job(jobs.content_housekeeping, "interval", hours=1, id="content-retention")
    scheduler.add_job(jobs.release_held_chunks, "interval", seconds=5, id="held-chunks")
    scheduler.add_job(jobs.enforce_revocations, "interval", seconds=3, id="revocations")
    scheduler.add_job(jobs.publish_crl, "interval", hours=6, id="crl")
    scheduler.add_job(jobs.checkpoint_audit, "interval", minutes=CHECKPOINT_MINUTES, id="audit-checkpoint")
    scheduler.add_job(jobs.warn_expiring_certificates, "cron", hour=8, id="cert-expiry")
    scheduler.add_job(jobs.apply_rollout, "cron", hour=0, minute=5, id="rollout")
    scheduler.add_job(jobs.monthly_report, "cron", day=1, hour=1, id="report")
    scheduler.add_job(jobs.renew_seal_archive, "cron", hour=2, minute=30, id="seal-archive")
    scheduler.add_job(jobs.archive_evidence, "interval", minutes=5, id="evidence-archive")
    scheduler.add_job(jobs.renew_evidence_archive, "cron", hour=2, minute=45, id="evidence-renewal")
    return scheduler
