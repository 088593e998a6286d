"""Issue 10's findings against the running exchange: a real hub and agents on the local
RabbitMQ, attacked by a registered unit with its own keys and broker login. Each case
asserts the named refusal, that nothing was written outside its folder, and that other
units' documents kept flowing meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import NetworkFactory, network  # noqa: F401 - the module's network fixture
from tests.e2e.support import SENDER, Network, wait_until
from tests.security.hostile import envelope_with_id, tree

pytestmark = pytest.mark.rabbitmq

XWB, ZFB, JW = "qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb", "qingyuan.yangshan.jw"


@pytest.fixture(scope="module")
def county(network: NetworkFactory) -> Iterator[Network]:  # noqa: F811
    net = network(5)
    net.start_hub()
    net.start_agents(per_process=5)
    yield net


def other_traffic_flows(net: Network) -> None:
    """A genuine document between two other units is delivered meanwhile."""
    mid, files = net.send(JW, [XWB], title="关于正常工作的通知")
    net.wait_hub(mid, "delivered", [XWB])
    assert net.inbox_files(XWB, mid)["附件1.bin"] == files["附件1.bin"]


def test_a_path_like_message_id_is_refused_at_the_hub_and_written_nowhere(county: Network) -> None:
    root = county.hub_home.parent
    before = set(tree(root))
    sender = county.agent(SENDER).creds
    ids = ["../../x", "../../../../authorized_keys", str(root / "abs" / "path")]
    for bad in ids:
        body = envelope_with_id(sender, county.agent(ZFB), bad)
        county.queue_raw(SENDER, bad, body, [ZFB], record=False)
    for bad in ids:
        rows = wait_until(lambda b=bad: county.rejections(b, "malformed_envelope"), 60, f"{bad} refused")
        kept = Path(rows[0].kept_at).resolve()
        assert kept.is_relative_to((county.hub_home / "refused").resolve())
    notice = county.wait_notice(SENDER, "", "malformed_envelope")  # the notice names no hostile id
    assert notice.event == "rejected"
    other_traffic_flows(county)
    assert county.received_count(ZFB) == 0
    new = set(tree(root)) - before
    homes = [county.hub_home, *(county.home(a) for a in county.addresses)]
    allowed = tuple(f"{h.relative_to(root)}/" for h in homes)
    outside = sorted(p for p in new if not p.startswith(allowed) and not p.endswith(".log"))
    assert outside == []
    inbox = county.home(ZFB) / "inbox"
    for bad in ids:
        assert not (inbox / bad).resolve().exists() and not Path(bad).exists()
