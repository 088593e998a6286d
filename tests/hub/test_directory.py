"""The hub's directory publication, on a real hub and broker: the first publication is the
whole snapshot, every later one a signed delta from the version published before (verified
and applied as an agent does); an agent asking with the current version gets nothing, one
behind gets the whole snapshot, made once per version."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pika
import pytest

from docex.broker import BrokerSettings, ConfirmedPublisher, amqp_url
from docex.cli.localnet import LocalNetwork
from docex.hub import broker
from docex.hub import directory as hub_directory
from docex.hub.context import HubContext, Origin
from docex.hub.intake import Intake
from docex.hub.jobs import HubJobs
from docex.hub.models import Unit
from docex.hub.service import make_context
from docex.hub.units import CsvUnit
from docex.protocols import messages
from docex.protocols.directory import apply_delta, verify_delta, verify_directory

pytestmark = pytest.mark.rabbitmq

PREFIX = "qingyuan.yangshan"
XXZX, ZFB = f"{PREFIX}.xxzx", f"{PREFIX}.zfb"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    net = LocalNetwork.create(tmp_path_factory.mktemp("directory"), PREFIX,
                              [CsvUnit(XXZX, "阳山县信息中心", "county", "", ""),
                               CsvUnit(ZFB, "阳山县人民政府办公室", "government", "", "")],
                              tag=f"dir{uuid.uuid4().hex[:8]}")
    try:
        yield net
    finally:
        net.destroy()


def _take(net: LocalNetwork, queue: str) -> list[tuple[str, bytes]]:
    """Every message waiting in `queue` (type, body), taken off it."""
    b = net.config.broker
    conn = pika.BlockingConnection(BrokerSettings(amqp_url(b.management_user, b.management_password, b.vhost)).parameters())
    try:
        channel, got = conn.channel(), []
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return got
            got.append((props.type or "", body))
    finally:
        conn.close()


def _rename(ctx: HubContext, address: str, name: str) -> None:
    with ctx.db.session() as s:
        unit = s.get(Unit, address)
        assert unit is not None
        unit.name = name
        hub_directory.bump(s)


def test_the_first_publication_is_whole_then_deltas_follow(hub: LocalNetwork) -> None:
    ctx = make_context(hub.config, None)
    jobs = HubJobs(ctx)
    try:
        _take(hub, f"unit.{XXZX}")
        assert jobs.publish_directory(force=True) >= 2
        ((kind, whole),) = _take(hub, f"unit.{XXZX}")
        assert kind == messages.DIRECTORY
        first = verify_directory(whole, ctx.identity.trust, expected_prefix=PREFIX)

        _rename(ctx, ZFB, "阳山县人民政府办公室（更名）")
        assert jobs.publish_directory() >= 2
        assert jobs.publish_directory() == 0  # nothing new: nothing sent
        ((kind, body),) = _take(hub, f"unit.{XXZX}")
        assert kind == messages.DIRECTORY_DELTA and len(body) < len(whole)
        delta = verify_delta(body, ctx.identity.trust, expected_prefix=PREFIX)
        assert (delta.base_version, [u.address for u in delta.units], delta.removed) == (first.version, [ZFB], ())
        second = apply_delta(first, delta)
        with ctx.db.read() as s:
            current, _ = hub_directory.current_snapshot(s, PREFIX, ctx.identity, ctx.child_prefixes())
        assert second.find(ZFB) == current.find(ZFB) and second.version == current.version
        assert second.units == current.units
    finally:
        jobs.close()
        ctx.db.dispose()


def test_an_agent_asking_with_the_current_version_gets_nothing(hub: LocalNetwork) -> None:
    ctx = make_context(hub.config, None)
    intake = Intake(ctx)
    origin = Origin("unit", XXZX, broker.broker_user(hub.config, XXZX))
    try:
        _take(hub, f"unit.{XXZX}")
        with ctx.db.read() as s:
            version = hub_directory.version(s)
            one = hub_directory.current_snapshot(s, PREFIX, ctx.identity, ctx.child_prefixes())
            assert hub_directory.current_snapshot(s, PREFIX, ctx.identity, ctx.child_prefixes()) is one  # made once
        with ConfirmedPublisher.open(broker.settings(hub.config)) as pub:
            intake.directory_request(origin, pub, str(version))
            assert _take(hub, f"unit.{XXZX}") == []
            intake.directory_request(origin, pub, str(version - 1))
            intake.directory_request(origin, pub, None)  # an agent that does not say: the whole one
        got = _take(hub, f"unit.{XXZX}")
        assert [kind for kind, _ in got] == [messages.DIRECTORY] * 2 and got[0][1] == one[1]
    finally:
        ctx.db.dispose()
