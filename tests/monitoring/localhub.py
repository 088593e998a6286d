"""A running county for the monitoring end-to-end tests: the real hub and agents as
processes on the local RabbitMQ (LocalNetwork, own vhost and broker users), a dashboard
login made with `docex hub user add --password-file`, and the agent library in the test
process to send, sign for and return, as a unit's staff would."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from docex.agent.actions import return_document, sign_for
from docex.agent.context import AgentContext
from docex.agent.sending import Draft, queue_document
from docex.cli.localnet import LocalNetwork
from docex.data import COUNTY_CSV
from docex.data import path as data_path
from docex.hub.db import Database
from docex.hub.models import Link
from docex.hub.units import read_csv
from docex.monitoring.scrape import Samples, scrape
from tests.cli.runner import run

PREFIX = "qingyuan.yangshan"
STAFF, PASSWORD = "xxzx", "阳山-dashboard-2011"
AUTH = (STAFF.encode(), PASSWORD.encode())  # HTTP Basic in UTF-8, as the read API reads it

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.25) -> T:
    """`check()` until it stops raising AssertionError (or KeyError: a series not there
    yet; OSError: an endpoint not up yet); the last failure is raised after `timeout`.
    Waits for behaviour, asserts no timing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive ports free right now on 127.0.0.1."""
    for _ in range(50):
        with closing(socket.socket()) as first:
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
            if base + count > 65535:
                continue
            try:
                for offset in range(1, count):
                    with closing(socket.socket()) as other:
                        other.bind(("127.0.0.1", base + offset))
            except OSError:
                continue
        return int(base)
    raise RuntimeError(f"no {count} consecutive free ports")


def units(*addresses: str) -> list[Any]:
    wanted = {f"{PREFIX}.{a}" for a in addresses}
    return [u for u in read_csv(data_path(COUNTY_CSV)) if u.address in wanted]


@dataclass
class County:
    net: LocalNetwork
    api_url: str
    hub_metrics: list[str]  # the main process first, then one per worker process
    agent_metrics: dict[str, str] = field(default_factory=dict)
    _contexts: dict[str, AgentContext] = field(default_factory=dict)

    # -- the units' staff (agent library, same store as the running agent) -----------------
    def agent(self, address: str) -> AgentContext:
        if address not in self._contexts:
            self._contexts[address] = AgentContext.open(self.net.agents[address])
        return self._contexts[address]

    def send(self, sender: str, to: Iterable[str], title: str, doc_number: str, **extra: Any) -> str:
        body = f"{title}\n\n阳山县人民政府办公室\n2011年9月26日\n".encode()
        return queue_document(self.agent(sender), Draft(to=tuple(to), title=title, doc_number=doc_number,
                                                        files={"正文.txt": body}, **extra))

    def sign_for(self, address: str, message_id: str) -> None:
        sign_for(self.agent(address), message_id)

    def return_(self, address: str, message_id: str, reason: str) -> None:
        return_document(self.agent(address), message_id, reason)

    # -- the information centre's view ----------------------------------------------------
    def api(self, path: str) -> Any:
        response = requests.get(self.api_url + path, auth=AUTH, timeout=10)
        response.raise_for_status()
        return response.json()

    def states(self, message_id: str) -> dict[str, str]:
        """recipient -> delivery state, as the read API reports it ({} before intake)."""
        response = requests.get(f"{self.api_url}/api/documents/{message_id}", auth=AUTH, timeout=10)
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        return {r["address"]: r["state"] for r in response.json()["recipients"]}

    def wait_states(self, message_id: str, expected: dict[str, str], timeout: float = 60.0) -> None:
        def check() -> None:
            got = self.states(message_id)
            assert {a: got.get(a) for a in expected} == expected, got

        eventually(check, timeout)

    def scrape_hub(self) -> list[Samples]:
        return [scrape(url) for url in self.hub_metrics]

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.read_text('utf-8', 'replace')[-2500:]}"
                         for name, p in self.net.logs.items() if p.exists())


def hub_total(scrapes: list[Samples], name: str, **labels: str) -> float:
    """A counter summed over the hub's processes, as PromQL's sum() would."""
    return sum(s.value(name, 0.0, **labels) for s in scrapes)


@contextmanager
def running_county(
    root: Path,
    addresses: Iterable[str],
    *,
    agents: Iterable[str],
    workers: int = 1,
    metrics: bool = True,
    parent_link: bool = False,
) -> Iterator[County]:
    """Hub (+ `workers`-1 worker processes) and the agents of `agents` as processes, every
    one with its own /metrics port when `metrics`; units of `addresses` not in `agents`
    are registered but stay off line. `parent_link` adds a link to the city with no bridge
    behind it, so what goes there waits in its queue."""
    tag = "mon" + uuid.uuid4().hex[:6]
    with ExitStack() as stack:
        net = LocalNetwork.create(root, PREFIX, units(*addresses), name="阳山县电子公文交换中心", tag=tag)
        stack.callback(net.destroy)
        stack.callback(net.stop_all)
        if parent_link:
            db = Database(net.config.database_url)
            with db.session() as s:
                s.add(Link(name="parent", prefix="", role="parent", state="active"))
            db.dispose()
        password_file = root / "dashboard-password"
        password_file.write_text(PASSWORD + "\n", "utf-8")
        result = run("hub", "user", "add", "--home", net.hub_home, "--name", STAFF, "--password-file", password_file)
        assert result.exit_code == 0, result.output

        api_port = free_ports()
        hub_port = free_ports(workers) if metrics else 0
        net.start_hub(workers=workers, api_port=api_port, metrics_port=hub_port)
        agent_ports: dict[str, int] = {}
        for short in agents:
            address = f"{PREFIX}.{short}"
            agent_ports[address] = free_ports() if metrics else 0
            net.start_agent(address, metrics_port=agent_ports[address])
        county = County(
            net, f"http://127.0.0.1:{api_port}",
            [f"http://127.0.0.1:{hub_port + i}/metrics" for i in range(workers)] if metrics else [],
            {a: f"http://127.0.0.1:{p}/metrics" for a, p in agent_ports.items() if p},
        )
        try:
            net.wait_ready("hub", "running", timeout=90)
            for address in agent_ports:
                net.wait_ready(address, f"agent {address} (", timeout=90)
            if workers > 1:  # workers start their endpoint before consuming
                eventually(lambda: [scrape(u) for u in county.hub_metrics[1:]], timeout=60)
            yield county
        except BaseException:
            print(county.logs())  # shown by pytest on failure
            raise
        finally:
            for ctx in county._contexts.values():
                ctx.store.dispose()
