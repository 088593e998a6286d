"""The agent's home (AGENTDIR): `docex.toml`, the unit's keys, the CA and trust anchors,
the current CRL, the signed directory snapshot, the local store, inbox/outbox folders."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from docex.pki.keys import resolve_passphrase
from docex.protocols.errors import DocexError
from docex.protocols.safepath import private_dir

CONFIG_NAME = "docex.toml"
# The CA that issued the broker's TLS certificate (the hub's own, unless the broker is shared).
# The unit's TLS login is client.crt + client.key next to its other keys.
BROKER_CA_NAME = "broker-ca.crt"


@dataclass(frozen=True)
class AgentKeys:
    passphrase_env: str = "DOCEX_PASSPHRASE"
    passphrase_file: str = ""
    insecure_no_passphrase: bool = False

    def passphrase(self) -> bytes | None:
        return resolve_passphrase(passphrase_file=self.passphrase_file or None, passphrase_env=self.passphrase_env,
                                  insecure_no_passphrase=self.insecure_no_passphrase)


@dataclass(frozen=True)
class SealConfig:
    auto: bool = False  # seal outgoing PDFs with the unit's seal before sending
    verify: bool = True  # verify seals of received PDFs
    tsa_url: str = ""  # the information centre's time-stamping authority


@dataclass(frozen=True)
class DeskConfig:
    """The clerks' desk and the local HTTP API (docex/agent/desk). Port 0: not served."""

    host: str = "127.0.0.1"
    port: int = 0
    timezone: str = "Asia/Shanghai"
    notify: bool = True  # browser notification for new documents
    sound: bool = True  # and a sound, louder for 特急/加急
    session_hours: float = 10.0


@dataclass(frozen=True)
class AgentConfig:
    home: Path
    address: str
    name: str
    hub_prefix: str
    broker_url: str
    keys: AgentKeys = field(default_factory=AgentKeys)
    seal: SealConfig = field(default_factory=SealConfig)
    desk: DeskConfig = field(default_factory=DeskConfig)
    metrics_port: int = 0
    heartbeat_seconds: float = 15.0
    max_envelope_bytes: int = 64 * 1024 * 1024
    prefetch: int = 32
    workers: int = 2
    crl_grace_hours: float = 72.0  # our hub's CRL past nextUpdate this long: crl_stale
    # A document signed under a CA we do not trust yet waits this long for our hub's snapshot
    # to bring that CA (receiving.py) before it is quarantined as certificate_untrusted.
    trust_wait_minutes: float = 10.0

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'agent.db'}"

    def save(self) -> Path:
        data: dict[str, Any] = asdict(self)
        data.pop("home")
        # the unit's own login, vhost included: amqps:// by certificate, or (a broker without
        # TLS, for development) amqp:// with a password
        data["broker"] = {"url": data.pop("broker_url")}
        path = self.home / CONFIG_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the broker password
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(data, fh)
        return path

    @classmethod
    def load(cls, home: str | os.PathLike[str]) -> AgentConfig:
        root = Path(home).resolve()
        path = root / CONFIG_NAME
        if not path.exists():
            raise DocexError("no_agent", f"{root} is not an agent home (no {CONFIG_NAME}); the information centre writes it with `docex unit add`")
        data = tomllib.loads(path.read_text("utf-8"))
        if "address" not in data:
            what = "a hub home (交换中心目录): use `docex hub`/`unit`/`track` commands with it" if "prefix" in data else "not an agent home"
            raise DocexError("no_agent", f"{root} is {what}; an agent command needs the unit's AGENTDIR")
        return cls(
            home=root,
            address=data["address"],
            name=data["name"],
            hub_prefix=data["hub_prefix"],
            broker_url=data["broker"]["url"] if "broker" in data else data["broker_url"],
            keys=AgentKeys(**data.get("keys", {})),
            seal=SealConfig(**data.get("seal", {})),
            desk=DeskConfig(**data.get("desk", {})),
            metrics_port=int(data.get("metrics_port", 0)),
            heartbeat_seconds=float(data.get("heartbeat_seconds", 15.0)),
            max_envelope_bytes=int(data.get("max_envelope_bytes", 64 * 1024 * 1024)),
            prefetch=int(data.get("prefetch", 32)),
            workers=int(data.get("workers", 2)),
            crl_grace_hours=float(data.get("crl_grace_hours", 72.0)),
            trust_wait_minutes=float(data.get("trust_wait_minutes", 10.0)),
        )


def write_home(
    home: str | os.PathLike[str],
    *,
    address: str,
    name: str,
    hub_prefix: str,
    broker_url: str,
    ca_pem: bytes,
    anchors_pem: list[bytes],
    crl_pem: bytes,
    directory_der: bytes,
    keys: AgentKeys,
    seal: SealConfig | None = None,
    broker_ca_pem: bytes = b"",
) -> AgentConfig:
    """Lay out an agent home next to the unit's keys (already in `home`)."""
    root = Path(home).resolve()
    private_dir(root)  # keys, documents, the store: the unit's own
    for sub in ("inbox", "outbox", "quarantine", "trust"):
        private_dir(root / sub)
    (root / "ca.crt").write_bytes(ca_pem)
    for index, pem in enumerate(anchors_pem):
        (root / "trust" / f"anchor-{index}.crt").write_bytes(pem)
    if crl_pem:
        (root / "crl.pem").write_bytes(crl_pem)
    (root / "directory.der").write_bytes(directory_der)
    if broker_ca_pem:
        (root / BROKER_CA_NAME).write_bytes(broker_ca_pem)
    config = AgentConfig(home=root, address=address, name=name, hub_prefix=hub_prefix, broker_url=broker_url,
                         keys=keys, seal=seal or SealConfig())
    config.save()
    return config
