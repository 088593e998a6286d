"""A whole docex network on this machine: one hub (or a city and a county hub) and its
units' agents as real processes on the local RabbitMQ. `make demo`, the end-to-end tests
and the benchmarks all build their networks with this, so they exercise the same paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from docex.agent.config import AgentKeys, SealConfig, write_home
from docex.broker import Management
from docex.broker.tls import BrokerNode
from docex.hub.broker_tls import configure
from docex.hub.config import HubConfig, KeyConfig
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.hub.setup import init_hub
from docex.hub.units import CsvUnit, Provisioning, add_unit, refresh_agent_directories
from docex.pki.ca import CertificateAuthority
from docex.protocols.errors import DocexError

ADMIN_URL = "amqp://guest:guest@127.0.0.1:5672/"
MANAGEMENT_URL = "http://127.0.0.1:15672"


def _python() -> str:
    return sys.executable


def transport_line(config: HubConfig) -> str:
    """What the demo says about how units reach the broker."""
    b = config.broker
    if b.tls_port:
        return (f"   消息服务器 TLS 证书登录 units and bridges log in over TLS with their certificates "
                f"({b.agent_host}:{b.tls_port}, SASL EXTERNAL; no password in any agent home)")
    return f"   注意 the local RabbitMQ has no TLS: units log in with passwords ({b.agent_host}:{b.agent_port})"


def write_agent_home(prov: Provisioning, keys: AgentKeys) -> Path:
    write_home(prov.keys_dir, address=prov.address, name=prov.name, hub_prefix=prov.hub_prefix,
               broker_url=prov.broker_url, ca_pem=prov.ca_pem, anchors_pem=prov.anchors_pem, crl_pem=prov.crl_pem,
               directory_der=prov.directory_der, keys=keys,
               seal=SealConfig(tsa_url=prov.tsa_url), broker_ca_pem=prov.broker_ca_pem)
    return prov.keys_dir


@dataclass
class LocalNetwork:
    root: Path
    hub_home: Path
    config: HubConfig
    agents: dict[str, Path] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: str | Path,
        prefix: str,
        units: Iterable[CsvUnit],
        *,
        name: str | None = None,
        database_url: str | None = None,
        tag: str | None = None,
        trust: tuple[str | Path, ...] = (),
        import_ca: str | Path | None = None,
        progress: Callable[[str], None] | None = None,
        tls: bool | None = None,
        admin_url: str = ADMIN_URL,
        management_url: str = MANAGEMENT_URL,
        nodes: str | None = None,
    ) -> LocalNetwork:
        """A hub in ROOT/hub (its own vhost and broker users, named with a unique tag so that
        several networks share one broker) and an agent home per unit in ROOT/agents/.
        `nodes` ("host:port,host:port,...") names every node of a broker cluster: the hub and
        the agents are given them all.

        With `tls` (default: whenever the local broker has docex's TLS listener) the hub's CA
        is registered with the broker (no restart) and units log in by certificate."""
        base = Path(root).resolve()
        tag = tag or uuid.uuid4().hex[:8]
        with Management(management_url) as mgmt:  # a vhost left by an earlier run of this tag
            mgmt.delete_vhost(f"docex-{tag}-{prefix}")
        config = init_hub(
            base / "hub", prefix, name=name, amqp_url=admin_url, management_url=management_url,
            vhost=f"docex-{tag}-{prefix}", database_url=database_url, passphrase=None,
            keys=KeyConfig(insecure_no_passphrase=True), trust=trust, import_ca=import_ca, user_prefix=f"{tag}.",
        )
        if tls is None or tls:
            node = BrokerNode.installed()
            if node is None and tls:
                raise DocexError("broker_unavailable", "the local RabbitMQ has no TLS listener: run "
                                 "scripts/setup-machine.sh (or `docex broker tls`)")
            if node is not None:
                configure([config.home], node, restart=False)
                config = HubConfig.load(config.home)
        if nodes:
            url = config.broker.url
            head, _, tail = url.partition("@")
            config = config.with_changes(broker=replace(config.broker, url=f"{head}@{nodes}/{tail.split('/', 1)[1]}",
                                                        agent_host=nodes))
            config.save()
        net = cls(base, base / "hub", config)
        net.add_units(units, progress=progress)
        return net

    @classmethod
    def open(cls, root: str | Path) -> LocalNetwork:
        base = Path(root).resolve()
        config = HubConfig.load(base / "hub")
        agents = {p.name: p for p in sorted((base / "agents").glob("*")) if (p / "docex.toml").exists()}
        return cls(base, base / "hub", config, agents)

    def add_units(self, units: Iterable[CsvUnit], *, existing_keys_root: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> list[Path]:
        db = Database(self.config.database_url)
        identity = HubIdentity.load(self.config, None)
        ca = CertificateAuthority.open(self.config.ca_dir, None)
        homes = []
        try:
            for unit in units:
                existing = None
                if existing_keys_root is not None and (existing_keys_root / unit.address).exists():
                    existing = existing_keys_root / unit.address
                prov = add_unit(self.config, db, identity, ca, address=unit.address, name=unit.name,
                                out_dir=self.root / "agents" / unit.address, passphrase=None, kind=unit.kind,
                                building=unit.building, existing_keys=existing)
                self.agents[unit.address] = write_agent_home(prov, AgentKeys(insecure_no_passphrase=True))
                homes.append(self.agents[unit.address])
                if progress is not None:
                    progress(unit.address)
            refresh_agent_directories(self.config, db, identity, list(self.agents.values()))
        finally:
            db.dispose()
        return homes

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        self.logs[name] = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as fh:
            proc = subprocess.Popen([_python(), "-m", "docex.cli.main", *args], stdout=fh, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_hub(self, *, workers: int = 1, api_port: int = 0, metrics_port: int = 0) -> subprocess.Popen[bytes]:
        return self._spawn("hub", ["hub", "run", "--home", str(self.hub_home), "--workers", str(workers),
                                   "--api-port", str(api_port), "--metrics-port", str(metrics_port)])

    def start_agent(self, address: str, *, metrics_port: int = 0) -> subprocess.Popen[bytes]:
        return self._spawn(address, ["agent", "run", "--home", str(self.agents[address]),
                                     "--metrics-port", str(metrics_port)])

    def start_agents(self, addresses: Iterable[str] | None = None, *, per_process: int = 1) -> None:
        """One process per agent, or `per_process` agents as threads of one process (the
        whole county on two cores)."""
        chosen = list(addresses or self.agents)
        if per_process <= 1:
            for address in chosen:
                self.start_agent(address)
            return
        for index in range(0, len(chosen), per_process):
            group = chosen[index : index + per_process]
            args = ["agent", "run-many"]
            for address in group:
                args += ["--home", str(self.agents[address])]
            self._spawn(f"agents-{index // per_process}", args)

    def wait_ready(self, name: str, marker: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            text = self.logs[name].read_text("utf-8", errors="replace") if self.logs[name].exists() else ""
            if marker in text:
                return
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready after {timeout}s:\n{self.logs[name].read_text('utf-8', errors='replace')[-3000:]}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def kill(self, name: str) -> None:
        self.stop(name, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def destroy(self) -> None:
        """Stop everything and remove the vhost and broker users this network made."""
        self.stop_all()
        b = self.config.broker
        users = _broker_users(self.config)
        with Management(b.management_url, b.management_user, b.management_password) as mgmt:
            mgmt.delete_vhost(b.vhost)
            for user in {f"{b.user_prefix}hub.{self.config.prefix}", *(b.user_prefix + a for a in self.agents), *users}:
                mgmt.delete_user(user)
            if b.management_user == f"{b.user_prefix}admin.{self.config.prefix}":
                mgmt.delete_user(b.management_user)  # the hub's own administrator, last


def _broker_users(config: HubConfig) -> list[str]:
    """Broker users the hub made for its units (however registered) and links (bridges),
    to remove with the network."""
    from sqlalchemy import select

    from docex.hub.models import Link, Unit

    db = Database(config.database_url)
    try:
        with db.read() as s:
            return [u for model in (Unit, Link) for u in s.execute(select(model.broker_user)).scalars() if u]
    except Exception:  # noqa: BLE001 - a half-made network has no links table yet
        return []
    finally:
        db.dispose()


# -- three levels: the city exchange, the county hub under it, the bridge between ---------------
CITY_PREFIX = "qingyuan"
COUNTY_PREFIX = "qingyuan.yangshan"


@dataclass
class CityCounty:
    """The city hub `qingyuan`, the county hub `qingyuan.yangshan` as its child, and the
    bridge between them (its home in ROOT/bridge, its process beside the county hub)."""

    root: Path
    city: LocalNetwork
    county: LocalNetwork
    bridge_home: Path

    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        city_units: Iterable[CsvUnit],
        county_units: Iterable[CsvUnit],
        tag: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> CityCounty:
        """Both hubs trust each other's CA (configured, never implied) before any unit is
        provisioned, so every agent holds both anchors; county units marked
        `existing_certificate=city` keep keys the city's CA issued them."""
        from docex.bridge.config import Side, write_bridge_home
        from docex.broker.topology import link_queue
        from docex.cli.link import attach
        from docex.hub.links import create_child_link

        base = Path(root).resolve()
        tag = tag or uuid.uuid4().hex[:8]
        city = LocalNetwork.create(base / "city", CITY_PREFIX, [], name="清远市电子公文交换中心", tag=tag)
        county = LocalNetwork.create(base / "county", COUNTY_PREFIX, [], name="阳山县电子公文交换中心", tag=tag,
                                     trust=(city.config.ca_dir / "ca.crt",))
        db = Database(city.config.database_url)
        try:
            kit = create_child_link(city.config, db, child_prefix=COUNTY_PREFIX,
                                    child_ca=county.config.ca_dir / "ca.crt", actor="localnet")
        finally:
            db.dispose()
        bridge = write_bridge_home(
            base / "bridge", link=kit.link,
            parent=Side(prefix=kit.hub_prefix, name=kit.hub_name, url=kit.broker_url, user=kit.broker_user,
                        queue=link_queue(kit.link)),
            ca_pem=kit.ca_pem, hub_cert_pem=kit.hub_cert_pem, crl_pem=kit.crl_pem,
        ).with_child(Side(prefix=COUNTY_PREFIX))
        bridge = replace(bridge, parent=bridge.parent.with_tls(bridge.home, "parent", cert_pem=kit.tls_cert_pem,
                                                              key_pem=kit.tls_key_pem, broker_ca_pem=kit.broker_ca_pem))
        bridge.save()
        attach(bridge, str(county.hub_home))
        city.add_units(list(city_units), progress=progress)
        county_rows = list(county_units)
        issued = base / "city-issued"
        city_ca = CertificateAuthority.open(city.config.ca_dir, None)
        for row in county_rows:
            if row.existing_certificate == "city":
                city_ca.issue_unit(row.address, row.name, issued / row.address, None)
        county.add_units(county_rows, existing_keys_root=issued, progress=progress)
        return cls(base, city, county, bridge.home)

    def start(self, *, per_process: int = 1) -> None:
        """Both hubs, the bridge and every agent, as processes."""
        for net in (self.city, self.county):
            net.start_hub()
        for net in (self.city, self.county):
            net.wait_ready("hub", "running")
        self.start_bridge()
        for net in (self.city, self.county):
            net.start_agents(per_process=per_process)

    def start_bridge(self, *, metrics_port: int = 0) -> subprocess.Popen[bytes]:
        proc = self.county._spawn("bridge", ["bridge", "run", "--home", str(self.bridge_home),
                                             "--hub", str(self.county.hub_home), "--metrics-port", str(metrics_port)])
        self.county.wait_ready("bridge", "running")
        return proc

    def stop_bridge(self, sig: int = signal.SIGTERM) -> None:
        self.county.stop("bridge", sig)

    def destroy(self) -> None:
        for net in (self.county, self.city):
            net.stop_all()
        for net in (self.county, self.city):
            net.destroy()
