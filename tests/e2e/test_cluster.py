"""A three-node RabbitMQ cluster: quorum queues replicated on every node, the hub and the
agents given all three addresses. The node every client is connected to is killed
mid-stream (SIGKILL) and brought back: clients fail over to the others, nothing is lost
and nothing is duplicated."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e import test_faults as faults
from tests.e2e.cluster import BrokerCluster, county_on, private_broker
from tests.e2e.support import Network, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[BrokerCluster]:
    with private_broker(3, "three-node RabbitMQ cluster") as made:
        yield made


@pytest.fixture(scope="module")
def county(cluster: BrokerCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with county_on(cluster, tmp_path_factory.mktemp("cluster"), 4, tag="c", workers=2) as net:
        yield net


def test_quorum_queues_live_on_every_node(cluster: BrokerCluster, county: Network) -> None:
    members = cluster.ctl(cluster.nodes[0], "list_queues", "-p", county.config.broker.vhost, "name", "members",
                          "--formatter", "json")
    for queue in ("hub.ingress", "hub.receipts", f"unit.{faults.VICTIM}"):
        assert queue in members
    assert all(node.name in members for node in cluster.nodes)


def test_a_node_killed_mid_stream_loses_nothing_and_clients_fail_over(cluster: BrokerCluster,
                                                                      county: Network) -> None:
    first = cluster.nodes[0]  # every client is connected here: it is first in their lists
    ids = faults.backlog_at_hub(county, 60, "集群")
    total = len(ids) * len(faults.RECIPIENTS)
    wait_until(lambda: faults.delivered(county, ids) >= 10, 120, "documents flowing", interval=0.02)
    county.pause("hub")
    assert faults.delivered(county, ids) < total  # the node dies mid-stream
    cluster.kill(first)
    killed = time.monotonic()
    county.resume("hub")
    # The clients fail over to the other two nodes and the stream goes on without the first.
    done = faults.delivered(county, ids)
    wait_until(lambda: faults.delivered(county, ids) > done, 120, "delivery going on without the killed node")
    failover = time.monotonic() - killed
    cluster.start_node(first)  # it comes back and rejoins
    faults.assert_exactly_once(county, ids)
    # Reported, never asserted (a noisy machine): the README quotes it.
    print(f"\ncluster: {total} deliveries, node {first.name} killed after {done}; the next delivery "
          f"{failover:.1f} s later, all final {time.monotonic() - killed:.1f} s after the kill (the node "
          f"restarted meanwhile); lost / duplicated / stuck = 0 / 0 / 0")
