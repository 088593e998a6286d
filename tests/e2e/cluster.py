"""A three-node RabbitMQ cluster on this machine for fault tests: separate node names,
ports and data folders beside the system broker (which it never touches), joined into one
cluster, each node killable (SIGKILL of its Erlang VM) and restartable."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from docex.cli.localnet import LocalNetwork
from docex.hub.db import Database
from tests.e2e.support import PREFIX, Network, county_units


class ClusterUnavailable(Exception):
    """The machine cannot run a cluster (no RabbitMQ server, not root, a node would not start)."""


def _free_port(low: int, high: int, taken: set[int]) -> int:
    for port in range(low, high):
        if port in taken or port + 20000 in taken:
            continue
        ok = True
        for p in (port, port + 20000):  # AMQP and its Erlang distribution port
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            taken.update({port, port + 20000})
            return port
    raise ClusterUnavailable(f"no free ports in {low}-{high}")


@dataclass
class Node:
    name: str  # e.g. docexc1-ab12@localhost
    port: int  # AMQP
    management_port: int
    base: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 20000),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(self.base / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
        }


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ClusterUnavailable(f"{' '.join(args)}: {(result.stderr or result.stdout).strip()[-500:]}")
    return result.stdout


class BrokerCluster:
    def __init__(self, size: int = 3) -> None:
        if os.geteuid() != 0 or shutil.which("rabbitmq-server") is None:
            raise ClusterUnavailable("needs root and Debian's rabbitmq-server")
        self.root = Path(tempfile.mkdtemp(prefix="docex-cluster-"))
        os.chmod(self.root, 0o755)
        tag = uuid.uuid4().hex[:4]
        taken: set[int] = set()
        self.nodes = []
        for i in range(1, size + 1):
            port = _free_port(5701, 5799, taken)
            mgmt = _free_port(15701, 15799, taken)
            self.nodes.append(Node(f"docexc{i}-{tag}@localhost", port, mgmt, self.root / f"n{i}"))

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def admin_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.nodes[0].port}/"

    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.nodes[0].management_port}"

    def _write(self, node: Node) -> None:
        (node.base / "conf.d").mkdir(parents=True, exist_ok=True)
        (node.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.port}\n"
            f"management.tcp.port = {node.management_port}\nmanagement.tcp.ip = 127.0.0.1\n"
            "cluster_partition_handling = pause_minority\n"
        )
        (node.base / "advanced.config").write_text("[].\n")
        (node.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        shutil.chown(self.root, "rabbitmq", "rabbitmq")
        for path in [node.base, *node.base.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")

    def ctl(self, node: Node, *args: str, timeout: float = 120) -> str:
        return _run(["rabbitmqctl", "-n", node.name, *args], timeout=timeout)

    def start_node(self, node: Node) -> None:
        if not node.base.exists():
            self._write(node)
        (node.base / "node.pid").unlink(missing_ok=True)  # `wait` must see the new one
        _run(["rabbitmq-server", "-detached"], env=node.env)
        self.ctl(node, "wait", str(node.base / "node.pid"), "--timeout", "120", timeout=150)

    def start(self) -> BrokerCluster:
        try:
            for node in self.nodes:
                self.start_node(node)
            first = self.nodes[0]
            for node in self.nodes[1:]:
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", first.name)
                self.ctl(node, "start_app")
            status = self.ctl(first, "cluster_status", "--formatter", "json")
            if status.count("docexc") < len(self.nodes) * 2:
                raise ClusterUnavailable(f"the nodes did not form one cluster: {status[-500:]}")
        except (ClusterUnavailable, subprocess.TimeoutExpired) as exc:
            self.destroy()
            raise ClusterUnavailable(str(exc)) from None
        return self

    def pid(self, node: Node) -> int:
        return int((node.base / "node.pid").read_text().strip())

    def kill(self, node: Node) -> None:
        """SIGKILL the node's Erlang VM: no shutdown, its connections just vanish."""
        os.kill(self.pid(node), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", node.port)) != 0:
                    return
            time.sleep(0.2)

    def destroy(self) -> None:
        for node in self.nodes:
            try:
                self.ctl(node, "shutdown", timeout=60)
            except (ClusterUnavailable, subprocess.TimeoutExpired):
                try:
                    os.kill(self.pid(node), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_broker(size: int, what: str) -> Iterator[BrokerCluster]:
    """A private broker of `size` nodes for a test module, destroyed afterwards; the test is
    skipped (saying `what` it needed) where the machine cannot run one."""
    try:
        made = BrokerCluster(size).start()
    except ClusterUnavailable as exc:
        pytest.skip(f"no {what} on this machine: {exc}")
    try:
        yield made
    finally:
        made.destroy()


@contextmanager
def county_on(cluster: BrokerCluster, root: Path, units: int, *, tag: str, workers: int = 1) -> Iterator[Network]:
    """A county (hub and agents running, plain AMQP) whose clients know every node of `cluster`."""
    local = LocalNetwork.create(root, PREFIX, county_units(units), tag=f"{tag}{uuid.uuid4().hex[:6]}", tls=False,
                                admin_url=cluster.admin_url(), management_url=cluster.management_url(),
                                nodes=cluster.addresses)
    net = Network(local, Database(local.config.database_url))
    try:
        net.start_hub(workers=workers)
        net.start_agents()
        yield net
    finally:
        net.close()
