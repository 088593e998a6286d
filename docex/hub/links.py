"""Links to other exchanges, as the hub's operator sees them: creating them (a broker user
for the bridge that may only publish into this hub's ingress and read its own link queue),
pausing, resuming and draining them, their status and the routes they serve.

A link's state lives in the `links` table and is enforced at the broker:
    active    the bridge may read `link.<name>` and publish into our ingress
    paused    the bridge's permissions on our vhost are revoked and its connections closed;
              new documents for the link wait in our outbox ("routed (waiting for link)")
    draining  the bridge keeps moving what is queued; new documents wait in our outbox;
              once the link queue is empty the link becomes paused
`resume` restores the permissions and releases what waited. The bridge process itself
holds no state of its own that matters: it only moves what the broker holds."""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from docex.broker import ConfirmedPublisher
from docex.broker.topology import link_permissions, link_queue, link_routing_key
from docex.hub import audit, broker, outbox, states
from docex.hub import directory as hub_directory
from docex.hub.config import HubConfig
from docex.hub.content_store import ContentStore
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.models import (
    Delivery,
    Document,
    Link,
    Outbox,
    Rejection,
    RemoteDirectory,
    Setting,
    iso,
    utcnow,
)
from docex.protocols import messages
from docex.protocols.address import check_address, is_under
from docex.protocols.errors import DocexError
from docex.protocols.notice import make_notice

_R = TypeVar("_R", bound=outbox.Row)
log = logging.getLogger(__name__)

PARENT = "parent"
STATES = ("active", "paused", "draining")
HOLDING = frozenset({"paused", "draining"})  # new traffic waits in the outbox
BRIDGE_DIR_KEY = "link:{name}:bridge_dir"  # Setting: where the bridge of this link reports


@dataclass(frozen=True)
class LinkKit:
    """What the bridge needs on one side of a link; the CLI writes it into BRIDGEDIR."""

    hub_prefix: str  # the hub on this side
    hub_name: str
    link: str  # the link's name at this hub
    role: str  # the link's role at this hub: child (we are the parent) or parent
    prefix: str  # the prefix served over the link ("" for a parent link)
    broker_url: str  # the bridge's own login at this hub, vhost included
    broker_user: str
    ca_pem: bytes  # this hub's CA: the other side adds it to its trust only if configured
    hub_cert_pem: bytes
    crl_pem: bytes
    # A broker with TLS (`docex broker tls`): the bridge's certificate login at this hub
    # (CN = its broker user, from this hub's CA; the key unencrypted, for a service) and the
    # CA of the broker's server certificate. Empty: a password login in broker_url.
    tls_cert_pem: bytes = b""
    tls_key_pem: bytes = b""
    broker_ca_pem: bytes = b""


def link_user(config: HubConfig, name: str) -> str:
    return f"{config.broker.user_prefix}link.{name}"


def child_link_name(child_prefix: str) -> str:
    return child_prefix.rsplit(".", 1)[-1]


def _kit(config: HubConfig, link: Link, password: str | None, tls: tuple[bytes, bytes] = (b"", b"")) -> LinkKit:
    url = broker.login_url(config, link.broker_user, password)
    ca = config.ca_dir / "ca.crt"
    crl = config.ca_dir / "crl.pem"
    return LinkKit(
        hub_prefix=config.prefix, hub_name=config.name, link=link.name, role=link.role, prefix=link.prefix,
        broker_url=url, broker_user=link.broker_user, ca_pem=ca.read_bytes(),
        hub_cert_pem=(config.hub_dir / "server.crt").read_bytes(),
        crl_pem=crl.read_bytes() if crl.exists() else b"",
        tls_cert_pem=tls[0], tls_key_pem=tls[1], broker_ca_pem=config.broker_ca_pem if tls[0] else b"",
    )


def _issue_link_login(config: HubConfig, user: str, name: str, *, rotate: bool) -> tuple[bytes, bytes]:
    """The bridge's TLS client certificate and key (PEM). A rotation revokes the previous
    certificates of this login: the CRL reaches the broker and the hub closes them out."""
    import tempfile

    from cryptography.hazmat.primitives import serialization

    from docex.pki.ca import CertificateAuthority
    from docex.pki.keys import generate_rsa_key

    ca = CertificateAuthority.open(config.ca_dir, config.keys.passphrase())
    if rotate:
        for record in ca.records():
            if record.role == "client" and record.holder == user and record.status == "valid":
                ca.revoke(record.serial, "superseded")
    key = generate_rsa_key(2048)
    with tempfile.TemporaryDirectory() as tmp:
        cert = ca.issue_client(user, tmp, None, link=name, public_key=key.public_key())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _open_link(config: HubConfig, db: Database, *, name: str, prefix: str, role: str, actor: str,
               rotate: bool) -> LinkKit:
    link_queue(name)  # checks the name
    user = link_user(config, name)
    with db.read() as s:
        existing = s.get(Link, name)
        if existing is not None and not rotate:
            raise DocexError("link_exists", f"link {name} already exists (prefix {existing.prefix or '*'})")
        if role == "child":
            for other in s.execute(select(Link).where(Link.role == "child")).scalars():
                if other.name != name and (is_under(prefix, other.prefix) or is_under(other.prefix, prefix)):
                    raise DocexError("link_exists", f"{prefix} overlaps link {other.name} ({other.prefix})")
    tls = (b"", b"")
    password: str | None = None
    if config.broker.tls_port:
        tls = _issue_link_login(config, user, name, rotate=rotate)
    else:
        password = secrets.token_urlsafe(24)
    with broker.management(config) as mgmt:
        mgmt.create_user(user, password)  # PUT: a rotation replaces the old password
        mgmt.set_permissions(config.broker.vhost, user, *link_permissions(name))
        if rotate:
            mgmt.close_user_connections(user, "bridge login replaced by the hub operator")
    broker.declare(config, links=(name,))
    with db.session() as s:
        link = s.get(Link, name)
        if link is None:
            link = Link(name=name, prefix=prefix, role=role, state="active", broker_user=user)
            s.add(link)
        else:
            link.broker_user, link.state = user, "active"
        # A new neighbour gets our snapshot at the next directory tick.
        hub_directory.bump(s)
        audit.append(s, actor, "link.rotate" if existing is not None else "link.create", name, prefix=prefix,
                     role=role, broker_user=user)
        s.flush()
        s.expunge(link)
    return _kit(config, link, password, tls)


def create_child_link(config: HubConfig, db: Database, *, child_prefix: str, name: str | None = None,
                      child_ca: str | Path | None = None, rotate: bool = False,
                      actor: str = "bridge-operator") -> LinkKit:
    """On the parent hub: a link for the child hub owning `child_prefix`. With `child_ca`,
    this hub also trusts the certificates the child's CA issues (trust is never implied)."""
    check_address(child_prefix)
    if not is_under(child_prefix, config.prefix) or child_prefix == config.prefix:
        raise DocexError("bad_address", f"{child_prefix} is not under this hub's prefix {config.prefix}")
    link_name = name or child_link_name(child_prefix)
    if link_name == PARENT:
        raise DocexError("bad_address", "a child link cannot be named 'parent'")
    if child_ca is not None:
        add_trust_anchor(config, child_ca, f"link-{link_name}-ca.crt")
    return _open_link(config, db, name=link_name, prefix=child_prefix, role="child", actor=actor, rotate=rotate)


def attach_parent(config: HubConfig, db: Database, *, parent_ca: str | Path | None = None, rotate: bool = False,
                  bridge_dir: str | Path | None = None, actor: str = "bridge-operator") -> LinkKit:
    """On the child hub: the `parent` link everything outside our prefix goes to."""
    if parent_ca is not None:
        add_trust_anchor(config, parent_ca, "link-parent-ca.crt")
    kit = _open_link(config, db, name=PARENT, prefix="", role="parent", actor=actor, rotate=rotate)
    if bridge_dir is not None:
        remember_bridge(db, PARENT, bridge_dir)
    return kit


def remember_bridge(db: Database, name: str, bridge_dir: str | Path) -> None:
    key = BRIDGE_DIR_KEY.format(name=name)
    with db.session() as s:
        row = s.get(Setting, key)
        value = str(Path(bridge_dir).resolve())
        if row is None:
            s.add(Setting(key=key, value=value))
        else:
            row.value = value


def add_trust_anchor(config: HubConfig, ca_file: str | Path, target_name: str) -> Path:
    """Trust another exchange's CA: copied into HUBDIR/trust, picked up by the running hub."""
    from docex.pki.keys import load_certificates

    load_certificates(Path(ca_file))  # refuse anything that is not a certificate
    config.trust_dir.mkdir(exist_ok=True)
    target = config.trust_dir / target_name
    if Path(ca_file).resolve() != target.resolve():
        # whole or not at all: a running hub reads the folder (not *.tmp) while we write
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copy(ca_file, tmp)
        tmp.replace(target)
    return target


# -- pause / resume / drain ----------------------------------------------------------------------
def _get(s: Session, name: str) -> Link:
    link = s.get(Link, name)
    if link is None:
        raise DocexError("unknown_link", f"no link named {name}")
    return link


def resolve_name(db: Database, name: str | None) -> str:
    """The link meant: given, or the only one there is."""
    with db.read() as s:
        names = list(s.execute(select(Link.name).order_by(Link.name)).scalars())
    if name:
        if name not in names:
            raise DocexError("unknown_link", f"no link named {name} (links: {', '.join(names) or 'none'})")
        return name
    if len(names) != 1:
        raise DocexError("unknown_link", f"name the link with --link ({', '.join(names) or 'no links yet'})")
    return names[0]


def _set_state(db: Database, name: str, state: str, actor: str) -> Link:
    with db.session() as s:
        link = _get(s, name)
        before = link.state
        link.state = state
        audit.append(s, actor, f"link.{state}", name, before=before)
        s.flush()
        s.expunge(link)
        return link


def _revoke(config: HubConfig, link: Link) -> None:
    with broker.management(config) as mgmt:
        mgmt.clear_permissions(config.broker.vhost, link.broker_user)
        mgmt.close_user_connections(link.broker_user, "link paused by the hub operator")


def pause(config: HubConfig, db: Database, name: str, *, actor: str = "bridge-operator") -> Link:
    """Stop the link at this hub: the bridge can neither read our link queue nor publish to
    us; what is queued stays queued, new documents wait in the outbox."""
    link = _set_state(db, name, "paused", actor)
    _revoke(config, link)
    return link


def drain(config: HubConfig, db: Database, name: str, *, actor: str = "bridge-operator") -> Link:
    """Let the backlog flow out, hold new documents; paused once the link queue is empty."""
    return _set_state(db, name, "draining", actor)


def resume(config: HubConfig, db: Database, name: str, *, actor: str = "bridge-operator",
           publisher: ConfirmedPublisher | None = None) -> int:
    """Open the link again and publish what waited for it. Returns the messages released."""
    link = _set_state(db, name, "active", actor)
    with broker.management(config) as mgmt:
        mgmt.set_permissions(config.broker.vhost, link.broker_user, *link_permissions(name))
    own = publisher is None
    pub = publisher or ConfirmedPublisher.open(broker.settings(config), connection_name="docex-link-resume")
    try:
        return release(config, db, pub, names=(name,))
    finally:
        if own:
            pub.close()


def held_keys(db: Database) -> frozenset[str]:
    """Routing keys whose outbox rows must wait: links paused or draining, read afresh so a
    pause takes effect on the next document, not after a cache expires."""
    with db.read() as s:
        names = s.execute(select(Link.name).where(Link.state.in_(tuple(HOLDING)))).scalars().all()
    return frozenset(link_routing_key(n) for n in names)


def not_held(db: Database, rows: Sequence[_R]) -> list[_R]:
    """The rows that may go out now (call outside any open transaction)."""
    if not any(r.routing_key.startswith("link.") for r in rows):
        return list(rows)
    held = held_keys(db)
    return [r for r in rows if r.routing_key not in held]


def release(config: HubConfig, db: Database, publisher: ConfirmedPublisher, *, names: tuple[str, ...],
            limit: int = 500) -> int:
    """Publish outbox rows still owed to these links (held while they were paused).
    Receivers are idempotent, so a row published twice is harmless."""
    if not names:
        return 0
    keys = [link_routing_key(n) for n in names]
    total = 0
    while True:
        with db.read() as s:
            rows = list(s.execute(
                select(Outbox).where(Outbox.published_at.is_(None), Outbox.routing_key.in_(keys))
                .order_by(Outbox.id).limit(limit)
            ).scalars())
        if not rows:
            return total
        total += outbox.deliver(db, publisher, rows, store=ContentStore(config.content_dir))
        if len(rows) < limit:
            return total


# -- housekeeping (the hub's scheduler) -------------------------------------------------------------
def refresh_trust(ctx: HubContext) -> bool:
    """Pick up trust anchors and CRLs added to or removed from HUBDIR/trust while the hub
    runs (each use of the hub's trust does so too: docex.hub.identity)."""
    return ctx.identity.refresh()


def _queue_stats(config: HubConfig, names: list[str]) -> dict[str, dict[str, Any]]:
    """Raw management data of the link queues (depth, consumers, rates); {} if unavailable."""
    out: dict[str, dict[str, Any]] = {}
    try:
        with broker.management(config) as mgmt:
            for name in names:
                data = mgmt._request("GET", f"/api/queues/{quote(config.broker.vhost, safe='')}/"
                                             f"{quote(link_queue(name), safe='')}", ok_missing=True)
                if data:
                    out[name] = data
    except Exception as exc:  # noqa: BLE001 - broker statistics are best effort
        log.debug("link queue statistics unavailable: %s", exc)
    return out


def housekeeping(ctx: HubContext, publisher: ConfirmedPublisher) -> dict[str, int]:
    """One tick: new trust files, drained links to paused,
    `waiting_for_link` notices to senders whose documents wait on a link that is down."""
    refresh_trust(ctx)
    links = ctx.links()
    if not links:
        return {}
    db, config = ctx.db, ctx.config
    stats = _queue_stats(config, list(links))
    paused = 0
    for name, link in links.items():
        q = stats.get(name)
        if link.state == "draining" and q is not None and int(q.get("messages") or 0) == 0:
            pause(config, db, name, actor="hub")
            paused += 1
    if paused:
        ctx.refresh_links()
    down = [n for n, link in links.items()
            if link.state != "active" or (n in stats and int(stats[n].get("consumers") or 0) == 0)]
    notices = notify_waiting(ctx, publisher, down)
    return {"paused": paused, "waiting_notices": notices}


def notify_waiting(ctx: HubContext, publisher: ConfirmedPublisher, names: list[str], *, limit: int = 200) -> int:
    """Tell each sender, once per document and link, that copies wait for a link that is
    down: they see `waiting_for_link` (路由已分发, 等待链路), not an error."""
    if not names:
        return 0
    routes = [f"link:{n}" for n in names]
    keys: list[str] = []
    with ctx.db.session() as s:
        rows = s.execute(
            select(Delivery.message_id, Delivery.recipient, Delivery.route, Document.sender)
            .join(Document, Document.message_id == Delivery.message_id)
            .where(Delivery.route.in_(routes), Delivery.state.in_((states.ACCEPTED, states.ROUTED)))
            .order_by(Delivery.id.desc()).limit(limit * 10)  # newest first: older ones were told already
        ).tuples().all()
        grouped: dict[tuple[str, str], tuple[str, list[str]]] = {}
        for message_id, recipient, route, sender in rows:
            grouped.setdefault((message_id, route), (sender, []))[1].append(recipient)
        for (message_id, route), (sender, recipients) in list(grouped.items())[:limit]:
            name = route.removeprefix("link:")
            key = messages.notice_key(message_id, "waiting_for_link", name)
            if s.execute(select(Outbox.id).where(Outbox.message_id == key)).first() is not None:
                continue
            sender_route = ctx.route(sender)
            if sender_route.kind == "paper" or sender_route.link == name:
                continue
            _, der = make_notice(
                message_id=message_id, event="waiting_for_link", code="link_down",
                message=f"已分发，等待链路 {name} 恢复后送达 (routed, waiting for link {name})",
                recipients=tuple(recipients), hub=ctx.config.prefix, cert=ctx.identity.cert, key=ctx.identity.key,
            )
            outbox.add(s, key=key, kind=messages.NOTICE, route=sender_route, address=sender, body=der)
            audit.append(s, "hub", "document.waiting_for_link", message_id, link=name, recipients=recipients)
            keys.append(key)
    if not keys:
        return 0
    with ctx.db.read() as s:
        pending = outbox.pending(s, keys)
    outbox.deliver(ctx.db, publisher, not_held(ctx.db, pending), store=ctx.content)
    return len(keys)


# -- status and routes ---------------------------------------------------------------------------
@dataclass
class LinkReport:
    name: str
    prefix: str
    role: str
    state: str
    broker_user: str
    connected: bool | None = None  # None: the broker's statistics are unavailable
    connected_since: str | None = None
    consumers: int | None = None
    backlog_out: int | None = None  # in our link queue, not yet confirmed by the other side
    held_out: int = 0  # waiting in our outbox (link paused or draining)
    backlog_in: int | None = None  # in the other side's queue towards us (from the bridge)
    oldest_waiting_seconds: float | None = None
    oldest_waiting_message_id: str = ""
    documents_out: int = 0
    documents_in: int = 0
    rate_out: float | None = None  # messages/s the bridge takes from our link queue
    documents_in_5m: int = 0
    last_error: dict[str, Any] | None = None
    bridge: dict[str, Any] | None = None  # the bridge's own report, when it runs beside us
    remote_prefixes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _connections(config: HubConfig) -> list[dict[str, Any]]:
    try:
        with broker.management(config) as mgmt:
            data = mgmt._request("GET", f"/api/vhosts/{quote(config.broker.vhost, safe='')}/connections")
            return list(data or [])
    except Exception as exc:  # noqa: BLE001 - best effort
        log.debug("connections unavailable: %s", exc)
        return []


def read_bridge_report(db: Database, name: str) -> dict[str, Any] | None:
    with db.read() as s:
        row = s.get(Setting, BRIDGE_DIR_KEY.format(name=name))
    if row is None:
        return None
    path = Path(row.value) / "status.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return data
    except (OSError, ValueError):
        return None


def status(config: HubConfig, db: Database, name: str | None = None) -> list[LinkReport]:
    """Every link (or one): connected or not and since when, backlog each way, the oldest
    waiting document, throughput and the last error."""
    now = utcnow()
    with db.read() as s:
        links = list(s.execute(select(Link).order_by(Link.name)).scalars())
        if name is not None:
            links = [link for link in links if link.name == name]
            if not links:
                raise DocexError("unknown_link", f"no link named {name}")
        reports = []
        for link in links:
            route = f"link:{link.name}"
            r = LinkReport(link.name, link.prefix, link.role, link.state, link.broker_user)
            oldest = s.execute(
                select(Delivery.message_id, Document.accepted_at)
                .join(Document, Document.message_id == Delivery.message_id)
                .where(Delivery.route == route, Delivery.state.in_((states.ACCEPTED, states.ROUTED)))
                .order_by(Document.accepted_at).limit(1)
            ).first()
            if oldest is not None:
                r.oldest_waiting_message_id = oldest[0]
                r.oldest_waiting_seconds = round((now - oldest[1]).total_seconds(), 1)
            r.held_out = s.execute(select(func.count()).select_from(Outbox).where(
                Outbox.published_at.is_(None), Outbox.routing_key == link_routing_key(link.name))).scalar_one()
            r.documents_out = s.execute(select(func.count(func.distinct(Delivery.message_id)))
                                        .where(Delivery.route == route)).scalar_one()
            r.documents_in = s.execute(select(func.count()).select_from(Document)
                                       .where(Document.origin == route)).scalar_one()
            r.documents_in_5m = s.execute(select(func.count()).select_from(Document).where(
                Document.origin == route, Document.accepted_at >= now - dt.timedelta(minutes=5))).scalar_one()
            refused = s.execute(select(Rejection).where(Rejection.sender == link.name)
                                .order_by(Rejection.id.desc()).limit(1)).scalar_one_or_none()
            if refused is not None:
                r.last_error = {"at": iso(refused.at), "code": refused.code, "message": refused.message,
                                "where": f"{config.prefix} intake"}
            r.remote_prefixes = [
                {"prefix": d.prefix, "version": d.version, "units": d.units, "received_at": iso(d.received_at)}
                for d in s.execute(select(RemoteDirectory).where(RemoteDirectory.link == link.name)
                                   .order_by(RemoteDirectory.prefix)).scalars()
            ]
            reports.append(r)
    stats = _queue_stats(config, [r.name for r in reports])
    conns = _connections(config) if stats else []
    for r in reports:
        q = stats.get(r.name)
        if q is not None:
            r.consumers = int(q.get("consumers") or 0)
            r.backlog_out = int(q.get("messages") or 0)
            rate = ((q.get("message_stats") or {}).get("ack_details") or {}).get("rate")
            r.rate_out = float(rate) if rate is not None else 0.0
            mine = [c for c in conns if c.get("user") == r.broker_user]
            r.connected = bool(mine) and r.state != "paused"
            if mine:
                since = min(int(c.get("connected_at") or 0) for c in mine)
                if since:
                    r.connected_since = iso(dt.datetime.fromtimestamp(since / 1000, dt.UTC))
        report = read_bridge_report(db, r.name)
        if report is not None:
            r.bridge = report
            inbound = (report.get("pumps") or {}).get("in") or {}
            if inbound.get("backlog") is not None:
                r.backlog_in = int(inbound["backlog"])
            err = report.get("last_error")
            if err and (r.last_error is None or str(err.get("at", "")) > str(r.last_error.get("at", ""))):
                r.last_error = {**err, "where": "bridge"}
    return reports


@dataclass(frozen=True)
class RouteRow:
    prefix: str
    goes_to: str  # local | link:<name> | paper
    note: str = ""


def routes(config: HubConfig, db: Database) -> list[RouteRow]:
    """Which prefixes go where, most specific first (the longest match wins)."""
    with db.read() as s:
        links = list(s.execute(select(Link).order_by(Link.prefix.desc())).scalars())
        remote = list(s.execute(select(RemoteDirectory).order_by(RemoteDirectory.prefix)).scalars())
    rows = [RouteRow(link.prefix, f"link:{link.name}", f"child hub, {link.state}")
            for link in links if link.role == "child"]
    rows.append(RouteRow(config.prefix, "local", config.name))
    parent = next((link for link in links if link.role == "parent"), None)
    rows.append(RouteRow("*", f"link:{parent.name}" if parent else "paper",
                         f"parent exchange, {parent.state}" if parent else "纸质传递 (off the network)"))
    for d in remote:
        rows.append(RouteRow(d.prefix, f"link:{d.link}", f"directory v{d.version}, {d.units} units (known over the link)"))
    return rows
