"""Helpers for the end-to-end tests: a real local network (hub and agents as processes on
the local RabbitMQ, built by LocalNetwork exactly as the demo builds it), and ways to look
at it from outside: the hub's tracking store, each agent's store and folders, the broker."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pika
from cryptography import x509
from sqlalchemy import func, select

from docex.agent.context import AgentContext
from docex.agent.sending import Draft, queue_document
from docex.agent.store import Notice, Outgoing, Quarantined, Received, Sent, SentRecipient
from docex.broker import BrokerSettings, Management
from docex.cli.demo import choose_units
from docex.cli.localnet import CityCounty, LocalNetwork
from docex.hub.config import HubConfig
from docex.hub.db import Database
from docex.hub.models import AuditEntry, Delivery, Document, Receipt, Rejection, Unit
from docex.hub.units import CsvUnit
from docex.protocols import envelope, messages
from docex.protocols.manifest import Manifest, new_message_id

PREFIX = "qingyuan.yangshan"
SENDER = "qingyuan.yangshan.xxzx"  # the information centre sends most test documents
STATISTICS_ROUND_S = 5.0  # RabbitMQ's collect_statistics_interval, left at its default
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, what: str = "", interval: float = 0.1) -> T:
    """Poll until `predicate()` is truthy and return its value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def knows(home: Path, address: str) -> bool:
    """Whether the agent home's stored directory (as its running service keeps it) lists
    `address`: read afresh, as a new `docex send` would."""
    ctx = AgentContext.open(home)
    try:
        return ctx.lookup(address) is not None
    finally:
        ctx.store.dispose()


def knows_state(home: Path, address: str) -> str | None:
    """The state (enabled/disabled) the agent home's stored directory gives `address`."""
    ctx = AgentContext.open(home)
    try:
        entry = ctx.lookup(address)
        return entry.state if entry is not None else None
    finally:
        ctx.store.dispose()


def county_units(count: int) -> list[CsvUnit]:
    """The information centre, 县委办, 县府办, then bureaus and townships (as the demo)."""
    return choose_units(count)


def document_files(tag: str, size: int = 2048) -> dict[str, bytes]:
    """A text and a binary attachment whose bytes the recipient must get back exactly."""
    body = f"关于{tag}的通知\n各单位：请认真贯彻落实。\n".encode()
    return {"正文.txt": body, "附件1.bin": os.urandom(size)}


@dataclass
class Network:
    """One hub and its agents, with the views the tests assert on."""

    net: LocalNetwork
    db: Database
    hosts: dict[str, str] = field(default_factory=dict)  # address -> name of the process running it
    _contexts: dict[str, AgentContext] = field(default_factory=dict)
    _groups: int = 0

    # -- what it is --------------------------------------------------------------------------
    @property
    def addresses(self) -> list[str]:
        return list(self.net.agents)

    @property
    def config(self) -> HubConfig:
        return self.net.config

    @property
    def hub_home(self) -> Path:
        return self.net.hub_home

    def home(self, address: str) -> Path:
        return self.net.agents[address]

    def agent(self, address: str) -> AgentContext:
        """The unit's context opened in the test process (its store is shared with the
        running agent, as the CLI shares it)."""
        if address not in self._contexts:
            self._contexts[address] = AgentContext.open(self.net.agents[address])
        return self._contexts[address]

    # -- processes -----------------------------------------------------------------------------
    def _marker_count(self, name: str, marker: str) -> int:
        log = self.net.logs.get(name)
        if log is None or not log.exists():
            return 0
        return log.read_text("utf-8", errors="replace").count(marker)

    def _wait_marker(self, name: str, marker: str, count: int, timeout: float = 90.0) -> None:
        def ready() -> bool:
            proc = self.net.procs.get(name)
            if proc is not None and proc.poll() is not None:
                text = self.net.logs[name].read_text("utf-8", errors="replace")
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{text[-3000:]}")
            return self._marker_count(name, marker) >= count

        wait_until(ready, timeout, f"{name}: {marker!r}")

    def start_hub(self, workers: int = 1) -> None:
        before = self._marker_count("hub", " running: ")
        self.net.start_hub(workers=workers)
        self._wait_marker("hub", " running: ", before + 1)

    def start_agents(self, addresses: Iterable[str] | None = None, *, per_process: int = 1) -> None:
        """Start agents (`per_process` of them as threads of one process) and wait until
        each is consuming its inbox and connected to publish."""
        chosen = list(addresses if addresses is not None else self.addresses)
        expected: list[tuple[str, str, int]] = []
        for index in range(0, len(chosen), max(1, per_process)):
            group = chosen[index : index + max(1, per_process)]
            name = group[0] if len(group) == 1 else f"agents-{self._groups}"
            self._groups += 1
            for address in group:
                marker = f"agent {address} ("
                expected.append((name, marker, self._marker_count(name, marker) + 1))
                self.hosts[address] = name
            if len(group) == 1:
                self.net.start_agent(group[0])
            else:
                args = ["agent", "run-many"]
                for address in group:
                    args += ["--home", str(self.net.agents[address])]
                self.net._spawn(name, args)
        for name, marker, count in expected:
            self._wait_marker(name, marker, count)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.net.stop(name, sig)

    def kill(self, name: str) -> None:
        """SIGKILL: no handler runs, nothing is flushed or acknowledged."""
        self.net.kill(name)

    def pause(self, name: str) -> None:
        """SIGSTOP the process group: the gate a fault test closes so that the fault lands
        where it claims (mid-stream) instead of racing the stream."""
        os.killpg(self.net.procs[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.killpg(self.net.procs[name].pid, signal.SIGCONT)

    def running(self, name: str) -> bool:
        proc = self.net.procs.get(name)
        return proc is not None and proc.poll() is None

    def recover(self, *, hub: bool = True) -> None:
        """Leave the network as a test found it: every paused process resumed, every process
        a failed fault test left dead started again (so the next test does not inherit it)."""
        for proc in list(self.net.procs.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
        if hub and not self.running("hub"):
            self.start_hub()
        dead = [address for address, name in self.hosts.items() if name == address and not self.running(name)]
        if dead:
            self.start_agents(dead)

    def log_text(self, name: str) -> str:
        return self.net.logs[name].read_text("utf-8", errors="replace")

    # -- sending -------------------------------------------------------------------------------
    def send(self, sender: str, to: Sequence[str], cc: Sequence[str] = (), *, files: dict[str, bytes] | None = None,
             title: str = "关于开展电子公文交换测试的通知", doc_number: str = "阳信发〔2011〕1号",
             priority: str = "平急") -> tuple[str, dict[str, bytes]]:
        """Queue a document in the sender's outbox (as `docex send` does)."""
        files = files if files is not None else document_files(title)
        draft = Draft(to=tuple(to), cc=tuple(cc), title=title, doc_number=doc_number, files=files, priority=priority)
        return queue_document(self.agent(sender), draft), files

    def enc_cert(self, address: str) -> x509.Certificate:
        with self.db.read() as s:
            unit = s.get(Unit, address)
            assert unit is not None, address
            return x509.load_pem_x509_certificate(unit.enc_cert.encode())

    def pack(self, sender: str, to: Sequence[str], cc: Sequence[str] = (), *, files: dict[str, bytes] | None = None,
             message_id: str | None = None, encrypt_for: Sequence[str] | None = None,
             off_network: Iterable[str] = ()) -> tuple[str, bytes]:
        """An envelope packed with the real protocol code, bypassing the agent's own checks
        (its directory, its refusal at source): what a misbehaving terminal could send."""
        manifest = Manifest(message_id=message_id or new_message_id(), sender=sender, recipients=tuple(to),
                            cc=tuple(cc), title="测试公文", doc_number="阳测〔2011〕9号")
        off = frozenset(off_network)
        targets = encrypt_for if encrypt_for is not None else [a for a in manifest.all_recipients if a not in off]
        body = envelope.pack(manifest, files or document_files("crafted"), self.agent(sender).creds,
                             [self.enc_cert(a) for a in targets], off_network=off)
        return manifest.message_id, body

    def queue_raw(self, sender: str, message_id: str, body: bytes, recipients: Sequence[str], *,
                  key: str | None = None, record: bool = True) -> None:
        """Put envelope bytes in the sender's outbox as if its agent had queued them: the
        running service publishes them as that unit, and notices come back to it."""
        with self.agent(sender).store.session() as s:
            s.add(Outgoing(kind=messages.DOCUMENT, message_id=key or message_id, body=body))
            if record:
                s.add(Sent(message_id=message_id, title="测试公文", doc_number="阳测〔2011〕9号", priority="平急"))
                for address in dict.fromkeys(recipients):
                    s.add(SentRecipient(message_id=message_id, recipient=address, state="queued"))

    # -- the hub's view --------------------------------------------------------------------------
    def hub_states(self, message_id: str) -> dict[str, str]:
        with self.db.read() as s:
            rows = s.execute(select(Delivery).where(Delivery.message_id == message_id)).scalars()
            return {r.recipient: r.state for r in rows}

    def deliveries(self, message_id: str) -> dict[str, Delivery]:
        with self.db.read() as s:
            rows = s.execute(select(Delivery).where(Delivery.message_id == message_id)).scalars()
            return {r.recipient: r for r in rows}

    def wait_hub(self, message_id: str, state: str, recipients: Iterable[str], timeout: float = 60.0) -> None:
        wanted = set(recipients)

        def done() -> bool:
            states = self.hub_states(message_id)
            return set(states) == wanted and all(v == state for v in states.values())

        wait_until(done, timeout, f"{message_id} {state} at the hub for {sorted(wanted)} (now {self.hub_states(message_id)})")

    def rejections(self, message_id: str | None = None, code: str | None = None) -> list[Rejection]:
        with self.db.read() as s:
            stmt = select(Rejection).order_by(Rejection.id)
            if message_id is not None:
                stmt = stmt.where(Rejection.message_id == message_id)
            if code is not None:
                stmt = stmt.where(Rejection.code == code)
            return list(s.execute(stmt).scalars())

    def audit(self, subject: str, action: str | None = None) -> list[AuditEntry]:
        with self.db.read() as s:
            stmt = select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.id)
            if action is not None:
                stmt = stmt.where(AuditEntry.action == action)
            return list(s.execute(stmt).scalars())

    def count(self, model: Any, *where: Any) -> int:
        with self.db.read() as s:
            return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())

    def documents(self) -> int:
        return self.count(Document)

    def receipts(self, message_id: str, event: str = "delivered") -> int:
        return self.count(Receipt, Receipt.message_id == message_id, Receipt.event == event)

    # -- the agents' view --------------------------------------------------------------------------
    def received(self, address: str, message_id: str) -> Received | None:
        with self.agent(address).store.session() as s:
            return s.get(Received, message_id)

    def received_count(self, address: str) -> int:
        with self.agent(address).store.session() as s:
            return int(s.execute(select(func.count()).select_from(Received)).scalar_one())

    def quarantined(self, address: str, message_id: str) -> list[Quarantined]:
        with self.agent(address).store.session() as s:
            return list(s.execute(select(Quarantined).where(Quarantined.message_id == message_id)).scalars())

    def inbox_files(self, address: str, message_id: str) -> dict[str, bytes]:
        folder = self.home(address) / "inbox" / message_id
        return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.exists() else {}

    def sent(self, sender: str, message_id: str) -> dict[str, SentRecipient]:
        with self.agent(sender).store.session() as s:
            rows = s.execute(select(SentRecipient).where(SentRecipient.message_id == message_id)).scalars()
            return {r.recipient: r for r in rows}

    def sent_state(self, sender: str, message_id: str) -> str | None:
        with self.agent(sender).store.session() as s:
            row = s.get(Sent, message_id)
            return row.state if row is not None else None

    def wait_sent(self, sender: str, message_id: str, state: str, recipients: Iterable[str], timeout: float = 60.0) -> dict[str, SentRecipient]:
        wanted = set(recipients)

        def done() -> dict[str, SentRecipient] | None:
            rows = self.sent(sender, message_id)
            ok = set(rows) == wanted and all(r.state == state for r in rows.values())
            return rows if ok else None

        return wait_until(done, timeout, f"{message_id} {state} in {sender}'s sent view for {sorted(wanted)}")

    def notices(self, address: str, message_id: str) -> list[Notice]:
        with self.agent(address).store.session() as s:
            return list(s.execute(select(Notice).where(Notice.message_id == message_id).order_by(Notice.id)).scalars())

    def wait_notice(self, address: str, message_id: str, code: str, timeout: float = 60.0) -> Notice:
        return wait_until(lambda: next((n for n in self.notices(address, message_id) if n.code == code), None),
                          timeout, f"a {code} notice for {message_id} at {address}")

    # -- the broker ----------------------------------------------------------------------------------
    def unit_settings(self, address: str) -> BrokerSettings:
        """The unit's own broker login, as its docex.toml holds it (its certificate over TLS)."""
        from docex.agent.service import broker_settings

        return broker_settings(self.agent(address))

    def unit_connection(self, address: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(self.unit_settings(address).parameters(f"docex-test-{address}"))

    def management(self) -> Management:
        b = self.config.broker
        return Management(b.management_url, b.management_user, b.management_password)

    def ready(self, queue: str) -> int:
        """Exactly what waits in `queue` now (AMQP passive declare): the management API's
        statistics, which queue_depth reads, lag by their round of a few seconds."""
        from docex.broker import connect
        from docex.hub import broker as hub_broker
        from tests.broker.support import ready_count

        conn = connect(hub_broker.settings(self.config), "docex-test-ready")
        try:
            return ready_count(conn.channel(), queue)
        finally:
            conn.close()

    def queue_depth(self, queue: str) -> int:
        with self.management() as mgmt:
            info = mgmt.get_queue(self.config.broker.vhost, queue)
        return 0 if info is None else info.messages_ready + info.messages_unacknowledged

    def wait_empty(self, queue: str, timeout: float = 60.0, what: str = "",
                   before: Callable[[], bool] = lambda: True) -> None:
        """Until `queue` holds nothing, waiting or being worked on, once `before()` holds.

        Only the management API counts messages a consumer holds unacknowledged, and its
        figures lag by up to one statistics round: a lone 0 may predate the last publish. So
        the queue must read empty (exactly, by passive declare, and by the API) throughout
        longer than a round; some figure in that span was then taken after it began."""
        since: list[float] = []

        def empty() -> bool:
            if not (before() and self.ready(queue) == 0 and self.queue_depth(queue) == 0):
                since.clear()
                return False
            since[:1] = since[:1] or [time.monotonic()]
            return time.monotonic() - since[0] > STATISTICS_ROUND_S + 1.0

        wait_until(empty, timeout, what or f"{queue} empty", interval=0.5)

    # -- the end ---------------------------------------------------------------------------------
    def close(self) -> None:
        for ctx in self._contexts.values():
            ctx.store.dispose()
        self._contexts.clear()
        self.db.dispose()
        self.net.destroy()


@contextlib.contextmanager
def city_and_county(root: Path, tag: str, *, city_units: Iterable[CsvUnit], county_units: Iterable[CsvUnit],
                    ) -> Iterator[tuple[CityCounty, Network, Network]]:
    """A city and a county exchange on the local broker, linked by a bridge (not started:
    `start_linked`), each hub's database open; both closed afterwards."""
    cc = CityCounty.create(root, city_units=list(city_units), county_units=list(county_units),
                           tag=f"{tag}{uuid.uuid4().hex[:8]}")
    city = Network(cc.city, Database(cc.city.config.database_url))
    county = Network(cc.county, Database(cc.county.config.database_url))
    try:
        yield cc, city, county
    finally:
        county.close()
        city.close()


def start_linked(cc: CityCounty, city: Network, county: Network, *, city_agents: Iterable[str] | None = None,
                 county_agents: Iterable[str] | None = None, per_process: int = 1) -> None:
    """Both hubs, the bridge between them, then the agents (all of a side unless named)."""
    city.start_hub()
    county.start_hub()
    cc.start_bridge()
    city.start_agents(city_agents, per_process=per_process)
    county.start_agents(county_agents, per_process=per_process)
