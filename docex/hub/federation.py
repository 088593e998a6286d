"""Federation: what hubs tell each other over a link besides documents and receipts.

Directory snapshots: a snapshot arriving over a link is accepted only when it is signed by
the hub that owns its prefix (its server certificate names that prefix and chains to a CA
this hub trusts) and that prefix lies behind the link it came over. The newest one per
prefix is kept as signed and passed on, unchanged, to our own units and to every other
link, so any agent of the network can encrypt to any unit; CRLs it carries for the CAs we
trust refresh our revocation data. Anything else is refused, kept and audited.

Notices: a neighbouring hub's signed notice about a document we sent over the link
(rejected, paper route, expired, waiting for link, reminder) updates our delivery rows
and goes on, unchanged, to the document's sender."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select

from docex.broker import ConfirmedPublisher, Delivery, PublishItem
from docex.broker.topology import DELIVER_EXCHANGE, link_routing_key
from docex.hub import audit, outbox, states
from docex.hub.context import HubContext, Origin
from docex.hub.models import Delivery as DeliveryRow
from docex.hub.models import Document, Outbox, RemoteDirectory, Unit, utcnow
from docex.hub.refusals import refuse
from docex.pki.errors import PkiError
from docex.protocols import messages
from docex.protocols.directory import DirectorySnapshot, verify_directory
from docex.protocols.errors import DocexError
from docex.protocols.logsafe import loggable
from docex.protocols.notice import verify_notice

log = logging.getLogger(__name__)

# notice event -> the state of the deliveries it concerns (None: passed on only)
NOTICE_STATE = {"rejected": states.REJECTED, "paper_route": states.PAPER_ROUTE, "expired": states.EXPIRED}


def _directory_item(der: bytes, prefix: str, version: int, target: str, routing_key: str) -> PublishItem:
    return PublishItem(DELIVER_EXCHANGE, routing_key, der, f"directory|{prefix}|{version}|{target}",
                       type=messages.DIRECTORY)


def verify_remote_directory(ctx: HubContext, der: bytes, origin: Origin) -> DirectorySnapshot:
    """The snapshot, if signed by the hub owning its prefix and that prefix lies behind
    the link it came over; else DocexError(directory_untrusted)."""
    snap = verify_directory(der, ctx.identity.trust)
    route = ctx.route(snap.prefix)
    if route.kind not in ("child", "parent") or route.link != origin.name:
        raise DocexError("directory_untrusted",
                         f"the directory of {snap.prefix} cannot arrive over link {origin.name}")
    return snap


def accept_remote_directory(ctx: HubContext, delivery: Delivery, origin: Origin) -> None:
    try:
        try:
            snap = verify_remote_directory(ctx, delivery.body, origin)
        except PkiError:
            # A CA trusted a moment ago (`bridge run --trust-parent-ca` wrote it while we
            # run) is picked up here rather than at the next housekeeping tick.
            from docex.hub.links import refresh_trust

            if not refresh_trust(ctx):
                raise
            snap = verify_remote_directory(ctx, delivery.body, origin)
    except PkiError as exc:
        # No notice back over the link: the neighbour hub logs its own side.
        refuse(ctx, delivery, origin, exc.code, exc.message, message_id=delivery.message_id or "")
        return
    with ctx.db.read() as s:
        current = s.get(RemoteDirectory, snap.prefix)
        if current is not None and current.version >= snap.version:
            return  # already have it (a redelivery, or it came round another way)
        units = list(s.execute(select(Unit.address).where(Unit.state == "enabled")).scalars())
    items = [_directory_item(delivery.body, snap.prefix, snap.version, a, a) for a in units]
    items += [_directory_item(delivery.body, snap.prefix, snap.version, name, link_routing_key(name))
              for name in ctx.links() if name != origin.name]
    publisher = delivery.publisher
    assert publisher is not None
    if items:
        publisher.publish_many(items)  # before storing: a crash here means a harmless repeat
    with ctx.db.session() as s:
        row = s.get(RemoteDirectory, snap.prefix)
        if row is None:
            s.add(RemoteDirectory(prefix=snap.prefix, version=snap.version, link=origin.name,
                                  units=len(snap.units), der=delivery.body, received_at=utcnow()))
        elif row.version < snap.version:
            row.version, row.link, row.units, row.der, row.received_at = (
                snap.version, origin.name, len(snap.units), delivery.body, utcnow())
        audit.append(s, f"link:{origin.name}", "directory.remote", snap.prefix, version=snap.version,
                     units=len(snap.units))
    learned = learn_parent_anchors(ctx, snap, origin)
    installed = install_remote_crls(ctx, snap)
    if learned:
        with ctx.db.session() as s:
            audit.append(s, f"link:{origin.name}", "trust.learned", snap.prefix, anchors=learned)
    log.info("directory %s v%d over link %s: %d units, passed to %d units and %d links%s", snap.prefix,
             snap.version, origin.name, len(snap.units), len(units), len(items) - len(units),
             f", {installed} CRL(s) refreshed" if installed else "")


def remote_items(ctx: HubContext, address: str) -> list[PublishItem]:
    """Every remote snapshot we hold, for one of our units (after its directory request)."""
    with ctx.db.read() as s:
        rows = list(s.execute(select(RemoteDirectory).order_by(RemoteDirectory.prefix)).scalars())
    return [_directory_item(r.der, r.prefix, r.version, address, address) for r in rows]


def lookup(ctx: HubContext, address: str) -> dict[str, str] | None:
    """A unit anywhere on the network, from our own table or a remote snapshot."""
    from docex.protocols.address import is_under

    with ctx.db.read() as s:
        unit = s.get(Unit, address)
        if unit is not None:
            return {"address": unit.address, "name": unit.name, "hub": ctx.config.prefix, "state": unit.state}
        rows = [r for r in s.execute(select(RemoteDirectory)).scalars() if is_under(address, r.prefix)]
    for row in sorted(rows, key=lambda r: -len(r.prefix)):
        snap = verify_directory(row.der, ctx.identity.trust)
        entry = snap.find(address)
        if entry is not None:
            return {"address": entry.address, "name": entry.name, "hub": snap.prefix, "state": entry.state}
    return None


LEARNED_PREFIX = "learned-"


def learn_parent_anchors(ctx: HubContext, snap: DirectorySnapshot, origin: Origin) -> list[str]:
    """Trust what our parent exchange trusts (the other counties' CAs under the city, the
    province's): taken only from the parent hub's own snapshot, verified above, over the
    parent link. Kept as HUBDIR/trust/learned-*.crt, replaced as a whole each time, so an
    anchor the parent drops is dropped here and, through our snapshot, at every agent.
    Returns the fingerprints added or removed (empty: nothing changed)."""
    link = ctx.links().get(origin.name)
    parent_prefix = ctx.config.prefix.rpartition(".")[0]
    if link is None or link.role != "parent" or snap.prefix != parent_prefix:
        return []
    own = ctx.identity.ca_cert.fingerprint(hashes.SHA256())
    wanted: dict[str, bytes] = {}
    for cert in snap.anchor_certificates():
        fp = cert.fingerprint(hashes.SHA256())
        if fp != own:
            wanted[f"{LEARNED_PREFIX}{fp.hex()[:16]}.crt"] = cert.public_bytes(serialization.Encoding.PEM)
    trust_dir = ctx.config.trust_dir
    trust_dir.mkdir(exist_ok=True)
    changed = []
    for path in trust_dir.glob(f"{LEARNED_PREFIX}*.crt"):
        if path.name not in wanted:
            path.unlink()
            changed.append(f"-{path.name}")
    for name, pem in wanted.items():
        path = trust_dir / name
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pem)
            tmp.replace(path)
            changed.append(f"+{name}")
    if changed:
        ctx.identity.refresh()
    return changed


def install_remote_crls(ctx: HubContext, snap: DirectorySnapshot) -> int:
    """Keep the newest CRL of each other CA we trust, from a neighbour's snapshot. Our own
    CA's CRL is never taken from elsewhere; a CRL is used only if its issuer signed it."""
    identity = ctx.identity
    trust = identity.trust
    own = identity.ca_cert.subject
    installed = 0
    for pem in snap.crls:
        try:
            crl = x509.load_pem_x509_crl(pem.encode())
        except ValueError:
            continue
        if crl.issuer == own:
            continue
        issuer = next((a for a in trust.anchors if a.subject == crl.issuer
                       and crl.is_signature_valid(a.public_key())), None)  # type: ignore[arg-type]
        if issuer is None:
            continue
        current = next((c for c in trust.crls if c.issuer == crl.issuer), None)
        if current is not None and current.last_update_utc >= crl.last_update_utc:
            continue
        path = _crl_path(ctx, crl)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(pem)
        tmp.replace(path)
        identity.refresh()
        installed += 1
    return installed


def _crl_path(ctx: HubContext, crl: x509.CertificateRevocationList) -> Path:
    """The trust-dir file already holding this issuer's CRL (so an older one never shadows
    the newer), or a new one named after the issuer."""
    trust_dir = ctx.config.trust_dir
    for path in ctx.identity.files()[1]:
        if path.parent != trust_dir or not path.exists():
            continue
        try:
            if x509.load_pem_x509_crl(path.read_bytes()).issuer == crl.issuer:
                return path
        except ValueError:
            continue
    name = hashlib.sha256(crl.issuer.public_bytes()).hexdigest()[:16]
    return trust_dir / f"remote-{name}.crl"


# -- notices from neighbouring hubs -------------------------------------------------------------
def accept_remote_notice(ctx: HubContext, delivery: Delivery, origin: Origin, publisher: ConfirmedPublisher) -> None:
    try:
        notice = verify_notice(delivery.body, ctx.identity.trust)
        if ctx.route(notice.hub).link != origin.name:
            raise DocexError("sender_mismatch", f"a notice of hub {notice.hub} cannot arrive over link {origin.name}")
    except PkiError as exc:
        refuse(ctx, delivery, origin, exc.code, exc.message, message_id=delivery.message_id or "")
        return
    key = delivery.message_id or messages.notice_key(notice.message_id, notice.event, notice.hub)
    route_name = f"link:{origin.name}"
    forward = False
    with ctx.db.session() as s:
        doc = s.get(Document, notice.message_id)
        if doc is None:
            # e.g. the neighbour refused a directory snapshot of ours: its own log has it.
            audit.append(s, f"link:{origin.name}", f"notice.{notice.event}", notice.message_id, code=notice.code,
                         message=notice.message, hub=notice.hub, matched=False)
            log.warning("notice from %s over %s for unknown %s: [%s] %s", loggable(notice.hub), origin.name,
                        loggable(notice.message_id), loggable(notice.code), loggable(notice.message, 500))
            return
        new_state = NOTICE_STATE.get(notice.event)
        changed: list[str] = []
        if new_state is not None:
            rows = s.execute(select(DeliveryRow).where(DeliveryRow.message_id == notice.message_id,
                                                       DeliveryRow.route == route_name)).scalars().all()
            for row in rows:
                if notice.event != "rejected" and row.recipient not in notice.recipients:
                    continue
                if not states.advances(row.state, new_state):
                    continue
                row.state, row.code, row.reason, row.closed_at = new_state, notice.code, notice.message, utcnow()
                changed.append(row.recipient)
                ctx.observer.delivery_state(new_state)
        if notice.envelope_sha256:  # delivery evidence of a hub on the way: kept here too
            from docex.hub.evidence import keep

            keep(s, message_id=notice.message_id, event=notice.event, issuer=notice.hub, der=delivery.body)
        sender_route = ctx.route(doc.sender)
        if sender_route.kind != "paper" and sender_route.link != origin.name:
            exists = s.execute(select(Outbox.id).where(Outbox.message_id == key, Outbox.recipient == doc.sender)).first()
            if exists is None:
                outbox.add(s, key=key, kind=messages.NOTICE, route=sender_route, address=doc.sender, body=delivery.body)
            forward = True
        audit.append(s, f"link:{origin.name}", f"notice.{notice.event}", notice.message_id, code=notice.code,
                     message=notice.message, hub=notice.hub, recipients=changed)
    if forward:
        from docex.hub.links import not_held

        with ctx.db.read() as s:
            rows_out = outbox.pending(s, [key])
        outbox.deliver(ctx.db, publisher, not_held(ctx.db, rows_out), store=ctx.content)


# -- addresses a sender's directory does not know yet ---------------------------------------------
MAX_LOOKUP = 200


def unroutable(ctx: HubContext, address: str) -> bool:
    """Whether no hub can deliver `address`: nowhere to route it, or the directories we
    hold settle that it exists nowhere. False while it may still become known (its hub's
    snapshot has not crossed the link yet)."""
    from docex.protocols.directory import no_hub_knows

    route = ctx.route(address)
    if route.kind == "paper":
        ctx.refresh_links()  # a link made a moment ago (`docex bridge run`) counts
        route = ctx.route(address)
    if route.kind == "paper":
        return True
    if route.kind == "local":
        with ctx.db.read() as s:
            return s.get(Unit, address) is None
    with ctx.db.read() as s:
        rows = list(s.execute(select(RemoteDirectory)).scalars())
    snaps = []
    for row in rows:
        try:
            snaps.append(verify_directory(row.der, ctx.identity.trust))
        except PkiError:
            continue
    return no_hub_knows(snaps, address)


def answer_lookup(ctx: HubContext, body: bytes, origin: Origin | None, publisher: ConfirmedPublisher) -> None:
    """A unit holds a document for addresses its directory does not know: tell it, signed,
    which ones no hub can deliver (paper route); for the others its directory will do."""
    import json

    from docex.broker.topology import DELIVER_EXCHANGE as DELIVER
    from docex.protocols.address import check_address
    from docex.protocols.errors import describe
    from docex.protocols.identifiers import check_message_id
    from docex.protocols.notice import make_notice

    if origin is None or origin.kind != "unit" or len(body) > 64 * 1024:
        return
    try:
        data = json.loads(body)
        message_id = check_message_id(str(data["message_id"]))
        addresses = [str(a) for a in data["recipients"]][:MAX_LOOKUP]
        for address in addresses:
            check_address(address)
    except (ValueError, KeyError, TypeError, PkiError) as exc:
        log.warning("ignored a malformed directory lookup from %s: %s", origin.name, loggable(exc, 500))
        return
    paper = tuple(a for a in addresses if unroutable(ctx, a))
    if not paper:
        return
    _, der = make_notice(message_id=message_id, event="paper_route", code="paper_route",
                         message=f"{describe('paper_route')}: {', '.join(paper)}", recipients=paper,
                         hub=ctx.config.prefix, cert=ctx.identity.cert, key=ctx.identity.key)
    publisher.publish_many([PublishItem(DELIVER, origin.name, der,
                                        messages.notice_key(message_id, "paper_route", "lookup"), type=messages.NOTICE)])
    log.info("lookup by %s for %s: paper route for %s", origin.name, message_id, ", ".join(paper))
