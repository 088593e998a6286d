"""Links at the hub: creating them (a bridge login limited to our ingress and its own link
queue), routes, pause/resume, and federation: remote directory snapshots accepted only
from the hub owning the prefix behind the link, remote CRLs, remote notices. Two real hubs
(city and county, each on its own vhost), no processes running: handlers are called
directly with real broker deliveries' shape."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
from sqlalchemy import select

from docex.broker import BrokerSettings, ConfirmedPublisher, Delivery, amqp_url
from docex.cli.localnet import LocalNetwork
from docex.hub import broker, links
from docex.hub import directory as hub_directory
from docex.hub.context import HubContext, Origin
from docex.hub.db import Database
from docex.hub.federation import (
    accept_remote_directory,
    accept_remote_notice,
    verify_remote_directory,
)
from docex.hub.identity import HubIdentity
from docex.hub.models import Delivery as DeliveryRow
from docex.hub.models import Document, Envelope, Link, Outbox, Rejection, RemoteDirectory
from docex.hub.service import make_context
from docex.hub.units import CsvUnit
from docex.pki.ca import CertificateAuthority
from docex.pki.errors import PkiError
from docex.pki.keys import load_certificate, load_private_key
from docex.protocols import messages
from docex.protocols.directory import DirectorySnapshot
from docex.protocols.notice import make_notice
from docex.protocols.statement import sign_statement
from tests.cli.runner import refused, run
from tests.conftest import Pki

pytestmark = pytest.mark.rabbitmq

XXZX = "qingyuan.yangshan.xxzx"


@dataclass
class Pair:
    city: LocalNetwork
    county: LocalNetwork
    kit: links.LinkKit  # the city's side of the link
    child_kit: links.LinkKit  # the county's side

    def db(self, net: LocalNetwork) -> Database:
        return Database(net.config.database_url)

    def ctx(self, net: LocalNetwork) -> HubContext:
        return make_context(net.config, None)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("links")
    tag = f"lk{uuid.uuid4().hex[:8]}"
    city = LocalNetwork.create(root / "city", "qingyuan", [CsvUnit("qingyuan.swb", "中共清远市委办公室", "party", "", "")],
                               tag=tag)
    county = LocalNetwork.create(root / "county", "qingyuan.yangshan", [CsvUnit(XXZX, "阳山县信息中心", "county", "", "")],
                                 tag=tag, trust=(city.config.ca_dir / "ca.crt",))
    try:
        db = Database(city.config.database_url)
        kit = links.create_child_link(city.config, db, child_prefix="qingyuan.yangshan",
                                      child_ca=county.config.ca_dir / "ca.crt")
        db.dispose()
        db = Database(county.config.database_url)
        child_kit = links.attach_parent(county.config, db)
        db.dispose()
        yield Pair(city, county, kit, child_kit)
    finally:
        county.destroy()
        city.destroy()


def _permissions(net: LocalNetwork, user: str) -> dict[str, Any] | None:
    b = net.config.broker
    with broker.management(net.config) as mgmt:
        return mgmt._request("GET", f"/api/permissions/{quote(b.vhost, safe='')}/{quote(user, safe='')}", ok_missing=True)


def _depth(net: LocalNetwork, queue: str) -> int:
    b = net.config.broker
    conn = pika.BlockingConnection(BrokerSettings(amqp_url(b.management_user, b.management_password, b.vhost)).parameters())
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def _delivery(body: bytes, user: str, kind: str, publisher: ConfirmedPublisher | None, message_id: str) -> Delivery:
    return Delivery(body=body, message_id=message_id, headers={}, user_id=user, redelivered=False, delivery_tag=1,
                    properties=pika.BasicProperties(type=kind, message_id=message_id), publisher=publisher)


def test_a_link_gets_a_bridge_login_limited_to_ingress_and_its_own_queue(pair: Pair) -> None:
    perms = _permissions(pair.city, pair.kit.broker_user)
    assert perms is not None
    assert (perms["configure"], perms["write"], perms["read"]) == ("^$", r"^docex\.ingress$", r"^link\.yangshan$")
    with broker.management(pair.city.config) as mgmt:
        assert mgmt.get_queue(pair.city.config.broker.vhost, "link.yangshan") is not None
    assert pair.kit.broker_url.endswith(quote(pair.city.config.broker.vhost, safe=""))
    with Database(pair.city.config.database_url).read() as s:
        row = s.get(Link, "yangshan")
        assert row is not None and (row.prefix, row.role, row.state) == ("qingyuan.yangshan", "child", "active")
    # The child's CA is trusted only because the operator said so.
    assert (pair.city.config.trust_dir / "link-yangshan-ca.crt").exists()


@pytest.mark.parametrize(("prefix", "name", "code"), [
    ("qingyuan.yangshan", None, "link_exists"),
    ("qingyuan.yangshan.libu", "libu", "link_exists"),  # inside an existing child
    ("guangdong.shaoguan", None, "bad_address"),  # not under us
    ("qingyuan", None, "bad_address"),  # ourselves
    ("qingyuan.parent", None, "bad_address"),  # the reserved name
])
def test_bad_links_are_refused_with_a_named_error(pair: Pair, prefix: str, name: str | None, code: str) -> None:
    db = Database(pair.city.config.database_url)
    with pytest.raises(PkiError) as err:
        links.create_child_link(pair.city.config, db, child_prefix=prefix, name=name)
    assert err.value.code == code


def test_routes_show_where_each_prefix_goes(pair: Pair) -> None:
    city = {r.prefix: r.goes_to for r in links.routes(pair.city.config, Database(pair.city.config.database_url))}
    county = {r.prefix: r.goes_to for r in links.routes(pair.county.config, Database(pair.county.config.database_url))}
    assert city == {"qingyuan.yangshan": "link:yangshan", "qingyuan": "local", "*": "paper"}
    assert county == {"qingyuan.yangshan": "local", "*": "link:parent"}


def test_pause_revokes_the_bridge_and_resume_releases_what_waited(pair: Pair) -> None:
    config, db = pair.county.config, Database(pair.county.config.database_url)
    links.pause(config, db, "parent")
    assert _permissions(pair.county, pair.child_kit.broker_user) is None
    assert links.held_keys(db) == frozenset({"link.parent"})
    key = f"test|{uuid.uuid4()}"
    with db.session() as s:
        s.add(Outbox(message_id=key, kind=messages.NOTICE, exchange="docex.deliver", routing_key="link.parent",
                     body=b"held while paused", recipient="qingyuan.swb"))
    report = links.status(config, db, "parent")[0]
    assert (report.state, report.held_out) == ("paused", 1)
    before = _depth(pair.county, "link.parent")
    assert links.resume(config, db, "parent") == 1
    assert _permissions(pair.county, pair.child_kit.broker_user) is not None
    assert links.held_keys(db) == frozenset()
    with db.read() as s:
        assert s.execute(select(Outbox.published_at).where(Outbox.message_id == key)).scalar_one() is not None
    assert _depth(pair.county, "link.parent") == before + 1


def _city_snapshot(pair: Pair) -> tuple[int, bytes]:
    identity = HubIdentity.load(pair.city.config, None)
    with Database(pair.city.config.database_url).session() as s:
        hub_directory.bump(s)
        return hub_directory.signed_snapshot(s, "qingyuan", identity)


def test_remote_directory_only_from_the_prefix_owner_behind_its_link(pair: Pair, pki: Pki, tmp_path: Path) -> None:
    ctx = pair.ctx(pair.county)
    parent = Origin("link", "parent", pair.child_kit.broker_user)
    _, der = _city_snapshot(pair)
    assert verify_remote_directory(ctx, der, parent).prefix == "qingyuan"
    county_cert = load_certificate(pair.county.config.hub_dir / "server.crt")
    county_key = load_private_key(pair.county.config.hub_dir / "server.key", None)
    with Database(pair.county.config.database_url).read() as s:
        _, own = hub_directory.signed_snapshot(s, "qingyuan.yangshan", ctx.identity)
    claim = DirectorySnapshot(prefix="qingyuan", version=99, generated_at="2011-08-20T00:00:00+08:00")
    forged = sign_statement("directory", claim.to_payload(), county_cert, county_key)
    pki.stranger.issue_server("假冒中心", tmp_path / "stranger", None, hub_prefix="qingyuan")
    stranger = sign_statement("directory", claim.to_payload(), load_certificate(tmp_path / "stranger" / "server.crt"),
                              load_private_key(tmp_path / "stranger" / "server.key", None))
    for body in (own, forged, stranger):
        with pytest.raises(PkiError) as err:
            verify_remote_directory(ctx, body, parent)
        assert err.value.code in ("directory_untrusted", "certificate_untrusted")


def test_accepted_snapshot_is_stored_passed_on_and_never_replaced_by_an_older(pair: Pair) -> None:
    ctx = pair.ctx(pair.county)
    parent = Origin("link", "parent", pair.child_kit.broker_user)
    version, der = _city_snapshot(pair)
    before = _depth(pair.county, f"unit.{XXZX}")
    with ConfirmedPublisher.open(broker.settings(pair.county.config)) as pub:
        accept_remote_directory(ctx, _delivery(der, parent.user, "directory", pub, f"directory|qingyuan|{version}"), parent)
        older = der
        version2, der2 = _city_snapshot(pair)
        accept_remote_directory(ctx, _delivery(der2, parent.user, "directory", pub, "d2"), parent)
        accept_remote_directory(ctx, _delivery(older, parent.user, "directory", pub, "d3"), parent)
    with ctx.db.read() as s:
        row = s.get(RemoteDirectory, "qingyuan")
        assert row is not None and (row.version, row.link, row.units) == (version2, "parent", 1)
    assert _depth(pair.county, f"unit.{XXZX}") == before + 2  # each new version reached our unit once
    # The city's CRL came with it: the county now checks city certificates against it.
    assert list(pair.county.config.trust_dir.glob("remote-*.crl"))


def test_a_revocation_at_the_city_reaches_the_county_hub(pair: Pair, tmp_path: Path) -> None:
    ctx = pair.ctx(pair.county)
    parent = Origin("link", "parent", pair.child_kit.broker_user)
    city_ca = CertificateAuthority.open(pair.city.config.ca_dir, None)
    issued = city_ca.issue_unit("qingyuan.yangshan.jw", "中共阳山县纪律检查委员会", tmp_path / "jw", None)
    ctx.identity.trust.verify(issued.sign_cert)
    city_ca.revoke(issued.sign_cert.serial_number, "key_compromise")
    city_ca.publish_crl()
    _, der = _city_snapshot(pair)
    with ConfirmedPublisher.open(broker.settings(pair.county.config)) as pub:
        accept_remote_directory(ctx, _delivery(der, parent.user, "directory", pub, "d-crl"), parent)
    with pytest.raises(PkiError) as err:
        ctx.identity.trust.verify(issued.sign_cert)
    assert err.value.code == "certificate_revoked"


def test_refused_snapshot_is_kept_and_recorded(pair: Pair) -> None:
    ctx = pair.ctx(pair.county)
    parent = Origin("link", "parent", pair.child_kit.broker_user)
    with ctx.db.read() as s:
        _, own = hub_directory.signed_snapshot(s, "qingyuan.yangshan", ctx.identity)
    accept_remote_directory(ctx, _delivery(own, parent.user, "directory", None, "own-back"), parent)
    with ctx.db.read() as s:
        row = s.execute(select(Rejection).where(Rejection.message_id == "own-back")).scalar_one()
    assert (row.code, row.sender) == ("directory_untrusted", "parent") and Path(row.kept_at).exists()


def test_a_neighbours_notice_updates_our_deliveries_and_reaches_the_sender(pair: Pair) -> None:
    ctx = pair.ctx(pair.county)
    parent = Origin("link", "parent", pair.child_kit.broker_user)
    mid = str(uuid.uuid4())
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    with ctx.db.session() as s:
        s.add(Document(message_id=mid, sender=XXZX, size=1, envelope_sha256="0" * 64, created_at=now))
        s.flush()
        s.add(Envelope(message_id=mid, data=b"x"))
        for address in ("qingyuan.swb", "guangdong.swb"):
            s.add(DeliveryRow(message_id=mid, recipient=address, route="link:parent", state="routed"))
    city = HubIdentity.load(pair.city.config, None)
    _, der = make_notice(message_id=mid, event="paper_route", code="paper_route", message="纸质传递",
                         recipients=("guangdong.swb",), hub="qingyuan", cert=city.cert, key=city.key)
    before = _depth(pair.county, f"unit.{XXZX}")
    key = messages.notice_key(mid, "paper_route")
    with ConfirmedPublisher.open(broker.settings(pair.county.config)) as pub:
        accept_remote_notice(ctx, _delivery(der, parent.user, "notice", pub, key), parent, pub)
        accept_remote_notice(ctx, _delivery(der, parent.user, "notice", pub, key), parent, pub)  # redelivered
    with ctx.db.read() as s:
        states = dict(s.execute(select(DeliveryRow.recipient, DeliveryRow.state).where(DeliveryRow.message_id == mid)).tuples().all())
    assert states == {"qingyuan.swb": "routed", "guangdong.swb": "paper_route"}
    assert _depth(pair.county, f"unit.{XXZX}") == before + 1


def test_link_create_writes_a_bridge_home_and_bridge_run_checks_the_hub(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "bridge-lianzhou"
    result = run("link", "create", "--home", pair.city.hub_home, "--child", "qingyuan.lianzhou", "--out", out,
                 "--insecure-no-passphrase")
    assert result.exit_code == 0, result.output
    assert "link.lianzhou" in result.output and (out / "tls" / "server.crt").exists()
    assert (out / "parent-ca.crt").read_bytes() == (pair.city.config.ca_dir / "ca.crt").read_bytes()
    try:
        # The county hub is not qingyuan.lianzhou: the bridge refuses to attach to it.
        refused(run("bridge", "run", "--home", out, "--hub", pair.county.hub_home), "bad_address")
        result = run("link", "status", "--home", pair.city.hub_home, "--link", "lianzhou", "--json")
        assert result.exit_code == 0, result.output
        assert '"connected": false' in result.output
        refused(run("link", "pause", "--home", pair.city.hub_home), "unknown_link")  # two links: name one
    finally:
        with broker.management(pair.city.config) as mgmt:
            mgmt.delete_user(links.link_user(pair.city.config, "lianzhou"))
