"""The bridge's pure logic: what a forwarded message looks like, how failures are named,
and the bridge home (bridge.toml keeps two passwords: owner-only)."""

from __future__ import annotations

from pathlib import Path

import pika
import pytest

from docex.bridge.config import BridgeConfig, Side, write_bridge_home
from docex.bridge.service import error_code, forward_item
from docex.broker import (
    BrokerConnectionLost,
    BrokerError,
    Delivery,
    PublishNacked,
    PublishTimeout,
    Unroutable,
)
from docex.broker.topology import INGRESS_EXCHANGE, INGRESS_ROUTING_KEY, RECEIPTS_ROUTING_KEY
from docex.pki.errors import PkiError
from docex.protocols import messages


def _delivery(headers: dict[str, object], kind: str = "document") -> Delivery:
    props = pika.BasicProperties(message_id="m-1", type=kind, user_id="tag.hub.qingyuan", headers=headers)
    return Delivery(body=b"envelope bytes", message_id="m-1", headers=headers, user_id="tag.hub.qingyuan",
                    redelivered=True, delivery_tag=7, properties=props, routing_key="link.parent")


def test_a_forwarded_message_keeps_its_bytes_id_and_type_and_counts_a_hop() -> None:
    item = forward_item(_delivery({messages.H_RECIPIENT: "qingyuan.swb", messages.H_HOPS: 2,
                                   "x-delivery-count": 3, "x-death": []}, "receipt"), "tag.link.yangshan")
    assert (item.exchange, item.routing_key) == (INGRESS_EXCHANGE, RECEIPTS_ROUTING_KEY)  # receipts: own queue
    assert (item.body, item.message_id, item.type, item.user_id) == (b"envelope bytes", "m-1", "receipt", "tag.link.yangshan")
    assert dict(item.headers or {}) == {messages.H_RECIPIENT: "qingyuan.swb", messages.H_HOPS: 3}
    assert item.persistent and item.mandatory


def test_first_crossing_starts_the_hop_count() -> None:
    item = forward_item(_delivery({}), "u")
    assert dict(item.headers or {}) == {messages.H_HOPS: 1}
    assert item.routing_key == INGRESS_ROUTING_KEY  # documents go to hub.ingress


@pytest.mark.parametrize(("exc", "code"), [
    (BrokerError("no", status=403), "access_refused"),
    (PublishTimeout("slow"), "publish_timeout"),
    (BrokerConnectionLost("gone"), "broker_unreachable"),
    (PublishNacked("nack"), "nacked"),
    (Unroutable("nowhere"), "unroutable"),
    (BrokerError("other"), "broker_error"),
    (RuntimeError("bug"), "internal"),
])
def test_failures_have_stable_codes(exc: BaseException, code: str) -> None:
    assert error_code(exc) == code


def test_bridge_home_round_trips_and_hides_its_passwords(tmp_path: Path) -> None:
    parent = Side(prefix="qingyuan", name="清远市电子公文交换中心", url="amqp://u:secret@127.0.0.1:5672/v", user="u",
                  queue="link.yangshan")
    config = write_bridge_home(tmp_path / "bridge", link="yangshan", parent=parent, ca_pem=b"ca", hub_cert_pem=b"hub",
                               crl_pem=b"")
    config.with_child(Side(prefix="qingyuan.yangshan")).save()
    loaded = BridgeConfig.load(tmp_path / "bridge")
    assert (loaded.link, loaded.parent, loaded.child.prefix, loaded.child.ready) == ("yangshan", parent, "qingyuan.yangshan", False)
    assert (tmp_path / "bridge" / "bridge.toml").stat().st_mode & 0o077 == 0
    with pytest.raises(PkiError) as err:
        write_bridge_home(tmp_path / "bridge", link="yangshan", parent=parent, ca_pem=b"", hub_cert_pem=b"", crl_pem=b"")
    assert err.value.code == "bridge_exists"
    with pytest.raises(PkiError) as err:
        BridgeConfig.load(tmp_path / "nothing")
    assert err.value.code == "no_bridge"
