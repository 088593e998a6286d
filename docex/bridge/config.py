"""The bridge's home (BRIDGEDIR): `bridge.toml` with its two broker logins (one per hub,
each limited to publishing into that hub's ingress and reading its own link queue), the
parent exchange's CA and hub certificates, the bridge's own certificate (tls/), and the
`status.json` the running bridge keeps current for the operator's `docex link status`."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from docex.protocols.errors import DocexError

CONFIG_NAME = "bridge.toml"
STATUS_NAME = "status.json"


@dataclass(frozen=True)
class Side:
    """One hub as the bridge sees it: its prefix, the bridge's login and the queue it reads."""

    prefix: str = ""
    name: str = ""  # the hub's display name
    url: str = ""  # amqp://bridge-user:password@host:port/vhost
    user: str = ""
    queue: str = ""  # link.<child> at the parent, link.parent at the child
    hub_home: str = ""  # the child hub's home, when the bridge runs beside it
    # amqps:// logins by certificate: files relative to the bridge home (tls/<side>-...)
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.url and self.user and self.queue)

    def with_tls(self, home: Path, side: str, *, cert_pem: bytes, key_pem: bytes, broker_ca_pem: bytes) -> Side:
        """Write this side's certificate login into HOME/tls/ (the key 0600) and point at it.
        Nothing to write (a broker without TLS): the side is unchanged."""
        if not cert_pem:
            return replace(self, tls_ca="", tls_cert="", tls_key="")
        folder = home / "tls"
        folder.mkdir(parents=True, exist_ok=True)
        names = {"tls_cert": f"{side}-client.crt", "tls_key": f"{side}-client.key", "tls_ca": f"{side}-broker-ca.crt"}
        for field_name, data in (("tls_cert", cert_pem), ("tls_key", key_pem), ("tls_ca", broker_ca_pem)):
            path = folder / names[field_name]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if field_name == "tls_key" else 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        return replace(self, **{k: f"tls/{v}" for k, v in names.items()})


@dataclass(frozen=True)
class BridgeConfig:
    home: Path
    link: str  # the link's name at the parent (the child's last label, e.g. yangshan)
    parent: Side
    child: Side = field(default_factory=Side)
    workers: int = 8  # envelopes in flight each way (each waits for the other side's confirm)
    prefetch: int = 64
    reconnect_max: float = 5.0  # seconds between attempts while a side is away
    metrics_port: int = 0

    @property
    def status_path(self) -> Path:
        return self.home / STATUS_NAME

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    def save(self) -> Path:
        data: dict[str, Any] = asdict(self)
        data.pop("home")
        path = self.home / CONFIG_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds two broker passwords
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(data, fh)
        return path

    @classmethod
    def load(cls, home: str | os.PathLike[str]) -> BridgeConfig:
        root = Path(home).resolve()
        path = root / CONFIG_NAME
        if not path.exists():
            raise DocexError("no_bridge", f"{root} is not a bridge home (no {CONFIG_NAME}): "
                                          "the parent hub's operator writes it with `docex link create`")
        data = tomllib.loads(path.read_text("utf-8"))
        return cls(
            home=root,
            link=str(data["link"]),
            parent=Side(**data["parent"]),
            child=Side(**data.get("child", {})),
            workers=int(data.get("workers", 8)),
            prefetch=int(data.get("prefetch", 64)),
            reconnect_max=float(data.get("reconnect_max", 5.0)),
            metrics_port=int(data.get("metrics_port", 0)),
        )

    def with_child(self, child: Side) -> BridgeConfig:
        return replace(self, child=child)


def write_bridge_home(
    home: str | os.PathLike[str],
    *,
    link: str,
    parent: Side,
    ca_pem: bytes,
    hub_cert_pem: bytes,
    crl_pem: bytes,
) -> BridgeConfig:
    """The parent side's part of a bridge home (`docex link create`); the child side is
    added when the bridge first runs beside the child hub."""
    root = Path(home).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if (root / CONFIG_NAME).exists():
        raise DocexError("bridge_exists", f"{root} already holds a bridge ({CONFIG_NAME})")
    (root / "parent-ca.crt").write_bytes(ca_pem)
    (root / "parent-hub.crt").write_bytes(hub_cert_pem)
    if crl_pem:
        (root / "parent-crl.pem").write_bytes(crl_pem)
    config = BridgeConfig(home=root, link=link, parent=parent)
    config.save()
    return config
