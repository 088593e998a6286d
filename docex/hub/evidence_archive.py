"""The hub's evidence archive (`[hub] evidence_archive`): one evidence bundle per document,
written once every delivery of it reached a final state (signed_for, returned, rejected,
expired, paper_route, recalled), and renewed on schedule before its newest archive
timestamp expires, so what the county keeps stays provable for decades.

    <folder>/YYYY/MM/<message_id>.zip    (the month the hub accepted it, local time)
    <folder>/.archived-until             how far (by closing time) the sweep has come

Writing is a scheduled sweep, not a step of intake: intake never waits for a TSA or a
disk. The sweep is idempotent (a bundle that exists is left alone), each file appears
whole or not at all (written aside, fsynced, renamed), and the mark moves only past
documents that were written or failed for good, so a crash or a TSA outage means the same
documents are taken up again at the next tick."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, case, func, or_, select

from docex.hub import audit, states
from docex.hub import evidence as hub_evidence
from docex.hub.context import HubContext
from docex.hub.models import Delivery, Document
from docex.pki.errors import PkiError
from docex.pki.timestamps import RENEW_MARGIN, Stamper
from docex.protocols import localtime
from docex.protocols.durable import write_durably
from docex.protocols.identifiers import is_message_id

log = logging.getLogger(__name__)
MARK = ".archived-until"
BATCH = 200
MOST_PER_SWEEP = 500  # bundles one run writes at most (a first run over years of documents)
OVERLAP = dt.timedelta(hours=1)
TRANSIENT = frozenset({"timestamp_failed", "timestamp_unavailable"})  # try again at the next tick


def folder(ctx: HubContext) -> Path | None:
    """The configured archive folder (absolute or under HUBDIR), or None."""
    configured = ctx.config.evidence_archive
    if not configured:
        return None
    root = Path(configured)
    return root if root.is_absolute() else ctx.config.home / root


def path_for(root: Path, message_id: str, accepted_at: dt.datetime) -> Path:
    """Where a document's bundle lives. The id comes from the tracking store, which took it
    from the network: it names a file only in its proven UUID form."""
    if not is_message_id(message_id):
        raise ValueError(f"not a message id: {message_id[:80]!r}")
    local = localtime.local(accepted_at)
    return root / f"{local:%Y}" / f"{local:%m}" / f"{message_id}.zip"


def _read_mark(root: Path) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat((root / MARK).read_text("utf-8").strip())
    except (OSError, ValueError):
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def archive_one(ctx: HubContext, root: Path, message_id: str, stamper: Stamper, *, replace: bool = False) -> Path | None:
    """Write one document's bundle (on demand, or from the sweep). Returns its path, or None
    when it was there already. Raises DocexError / PkiError when it cannot be exported."""
    from docex.protocols.errors import DocexError

    with ctx.db.read() as s:
        doc = s.get(Document, message_id)
        if doc is None:
            raise DocexError("unknown_document", f"no document {message_id} at this hub")
        path = path_for(root, message_id, doc.accepted_at)
    if path.exists() and not replace:
        return None
    data = hub_evidence.export(ctx, message_id, stamper)
    write_durably(path, data)
    with ctx.db.session() as s:
        audit.append(s, "hub", "evidence.archived", message_id, file=str(path.relative_to(root)), bytes=len(data))
    return path


@dataclass
class SweepResult:
    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # message id -> code (for good: not tried again)
    stopped: str = ""  # a transient failure ended the sweep early (retried at the next tick)


def _closed_documents(ctx: HubContext, after: tuple[dt.datetime, str], batch: int) -> list[tuple[str, dt.datetime]]:
    """Documents whose every delivery is final, by the time the last one closed, after the
    cursor (closing time, message id). Only deliveries closed since the cursor are grouped:
    the rest of the table is not walked every few minutes."""
    since, last_id = after
    closed = func.max(Delivery.closed_at)
    recent = select(Delivery.message_id).where(Delivery.closed_at >= since).distinct()
    with ctx.db.read() as s:
        rows = s.execute(
            select(Delivery.message_id, closed.label("closed"))
            .where(Delivery.message_id.in_(recent))
            .group_by(Delivery.message_id)
            .having(func.sum(case((Delivery.state.in_(tuple(states.FINAL)), 0), else_=1)) == 0)
            .having(or_(closed > since, and_(closed == since, Delivery.message_id > last_id)))
            .order_by(closed, Delivery.message_id)
            .limit(batch)
        ).tuples().all()
    return [(mid, at) for mid, at in rows if at is not None]


def sweep(ctx: HubContext, root: Path, stamper: Stamper, *, skip: set[str] | None = None,
          batch: int = BATCH, most: int = MOST_PER_SWEEP) -> SweepResult:
    """Archive every document that reached a final state since the mark (at most `most`
    bundles a run). The mark trails by OVERLAP: a delivery closed in a transaction that
    committed late, or by a hub process whose clock is behind, is still found; what was
    written already is only looked at."""
    result = SweepResult()
    skip = skip if skip is not None else set()
    mark = _read_mark(root)
    cursor = (mark - OVERLAP, "")
    reached = mark
    while True:
        rows = _closed_documents(ctx, cursor, batch)
        for message_id, closed_at in rows:
            if message_id not in skip:
                try:
                    if archive_one(ctx, root, message_id, stamper) is not None:
                        result.written.append(message_id)
                except PkiError as exc:
                    if exc.code in TRANSIENT:
                        result.stopped = f"[{exc.code}] {exc.message}"
                        break
                    result.failed[message_id] = exc.code
                    skip.add(message_id)
                    log.warning("evidence archive: %s not archived: [%s] %s", message_id, exc.code, exc.message)
                    with ctx.db.session() as s:
                        audit.append(s, "hub", "evidence.archive_failed", message_id, code=exc.code)
                except ValueError as exc:  # an id that cannot name a file: never archived, said once
                    result.failed[message_id] = "bad_message_id"
                    skip.add(message_id)
                    log.warning("evidence archive: %s", exc)
            cursor = (closed_at, message_id)
            reached = max(reached, closed_at)
            if len(result.written) >= most:
                break
        if result.stopped or len(result.written) >= most or len(rows) < batch:
            break
    if reached > mark:
        root.mkdir(parents=True, exist_ok=True)
        write_durably(root / MARK, reached.isoformat().encode())
    if result.written:
        log.info("evidence archive: %d bundle(s) written", len(result.written))
    return result


@dataclass
class RenewResult:
    renewed: list[str] = field(default_factory=list)
    not_due: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # file -> code
    blocked: str = ""  # nothing was renewed: the hub's TSA itself is about to expire


def _tsa_expires(ctx: HubContext) -> dt.datetime | None:
    from docex.pki.keys import load_certificates

    path = ctx.config.home / "tsa" / "tsa.crt"
    if not path.exists():
        return None
    chain = [*load_certificates(path)]
    ca = ctx.config.home / "tsa" / "ca.crt"
    if ca.exists():
        chain += load_certificates(ca)
    return min(c.not_valid_after_utc for c in chain)


def renew_due(ctx: HubContext, root: Path, stamper: Stamper, passphrase: bytes | None, *,
              margin: dt.timedelta = RENEW_MARGIN) -> RenewResult:
    """Renew (in place, atomically) every bundle whose newest archive timestamp expires within
    `margin`: the current CRLs and CA certificates, then a timestamp of the hub's TSA
    (docex.protocols.bundle.renew). Every renewal and failure is audited."""
    from docex.protocols import bundle

    result = RenewResult()
    now = localtime.utcnow()
    tsa_until = _tsa_expires(ctx)
    if tsa_until is not None and tsa_until - now < margin:
        # A timestamp from a TSA that expires as soon would extend nothing.
        result.blocked = (f"the hub's TSA certificate (or its CA) expires on {tsa_until:%Y-%m-%d}: issue a new one "
                          "(`docex pki issue-tsa`) before bundles can be renewed")
        log.warning("evidence archive: %s", result.blocked)
        with ctx.db.session() as s:
            audit.append(s, "hub", "evidence.renew_blocked", "tsa", until=tsa_until.isoformat())
        return result
    anchors, crls, certs = hub_evidence.renewal_inputs(ctx, passphrase, now=now)
    for path in sorted(root.rglob("*.zip")):
        name = str(path.relative_to(root))
        try:
            data = path.read_bytes()
            status = bundle.archive_status(data, anchors, at=now)
            if status.status in ("VALID", "RENEWAL_DUE") and status.expires is not None \
                    and status.expires - now >= margin:
                result.not_due += 1
                continue
            if not status.ok:
                raise PkiError("renewal_needed" if status.status == "INDETERMINATE" else "timestamp_invalid",
                               status.message)
            done = bundle.renew(data, stamper, anchors=anchors, crls=crls, certificates=certs, now=now)
            after = bundle.archive_status(done.data, anchors, at=now)
            if not after.ok or after.expires is None or after.expires - now < margin:
                # The TSA in use (loaded when the hub started) expires as soon: nothing gained.
                result.blocked = (f"a renewal by the hub's TSA would be due again at once ({after.message}): "
                                  "issue a new TSA certificate (`docex pki issue-tsa`) and restart the hub")
                log.warning("evidence archive: %s", result.blocked)
                with ctx.db.session() as s:
                    audit.append(s, "hub", "evidence.renew_blocked", "tsa", reason=after.message)
                break
        except PkiError as exc:
            result.failed[name] = exc.code
            log.warning("evidence archive: %s not renewed: [%s] %s", name, exc.code, exc.message)
            with ctx.db.session() as s:
                audit.append(s, "hub", "evidence.renew_failed", name, code=exc.code)
            continue
        write_durably(path, done.data)
        with ctx.db.session() as s:
            audit.append(s, "hub", "evidence.renewed", name, archive_timestamp=done.number,
                         crls_of=done.refreshed, not_refreshed=done.not_refreshed)
        result.renewed.append(name)
    if result.renewed:
        log.info("evidence archive: renewed %d bundle(s)", len(result.renewed))
    return result
