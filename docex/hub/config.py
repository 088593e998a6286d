"""The hub's settings, read from HUBDIR/docex.toml into frozen dataclasses."""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from docex.pki.keys import resolve_passphrase

CONFIG_NAME = "docex.toml"


@dataclass(frozen=True)
class BrokerConfig:
    url: str  # the hub's own AMQP login, with its vhost
    vhost: str
    management_url: str = "http://127.0.0.1:15672"
    management_user: str = "guest"
    management_password: str = "guest"
    user_prefix: str = ""  # prepended to unit addresses to form broker user names
    agent_host: str = "127.0.0.1"  # host:port agents use to reach the broker
    agent_port: int = 5672
    delivery_limit: int = 10
    # Set by `docex broker tls`: units and bridges log in over TLS on this port with their
    # client certificate (no password), verifying the broker against `tls_ca` (a PEM file,
    # relative to the hub home). 0: a broker without TLS, logins by password (development).
    tls_port: int = 0
    tls_ca: str = ""
    tls_crl_dir: str = ""  # where the broker reads CRLs; the hub copies its CRL there on change


@dataclass(frozen=True)
class Limits:
    max_envelope_bytes: int = 64 * 1024 * 1024
    # hours from acceptance until a recipient should have signed for it, by priority
    deadline_hours: dict[str, float] = field(
        default_factory=lambda: {"特急": 4.0, "加急": 24.0, "平急": 72.0}
    )
    expire_hours: float = 24.0 * 7  # undelivered this long: expired
    heartbeat_online_seconds: float = 120.0
    # What HUBDIR/refused/ keeps of refused input, for inspection: at most this much of each
    # (the head; the digest of the whole is in the name), at most this many files, none
    # older than this many days. A refusal is recorded and audited whatever is kept.
    refused_max_item_bytes: int = 1024 * 1024
    refused_max_files: int = 10_000
    refused_max_age_days: int = 90
    # How long past its nextUpdate the hub's own CA's CRL is still trusted (then crl_stale).
    crl_grace_hours: float = 72.0
    # The content store (HUBDIR/content) keeps a document's envelope (and chunks) this many
    # days after its last delivery reached a final state; the record, evidence and audit stay.
    content_retention_days: float = 30.0


@dataclass(frozen=True)
class KeyConfig:
    passphrase_env: str = "DOCEX_PASSPHRASE"
    passphrase_file: str = ""
    insecure_no_passphrase: bool = False

    def passphrase(self) -> bytes | None:
        return resolve_passphrase(
            passphrase_file=self.passphrase_file or None,
            passphrase_env=self.passphrase_env,
            insecure_no_passphrase=self.insecure_no_passphrase,
        )


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8470
    users: dict[str, str] = field(default_factory=dict)  # username -> pbkdf2 hash
    tls: bool = False  # HTTPS even on localhost (it always is on any other address)
    enroll_requests_per_10min: int = 10  # terminals' certificate requests, per client address


def _section(kind: Any, values: dict[str, Any], name: str) -> Any:
    """A config section as its dataclass. Keys this version does not know (a home written by
    a newer docex) are left out with a warning, not a crash."""
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        logging.getLogger(__name__).warning("docex.toml [%s]: 忽略未知设置 (ignored unknown settings): %s",
                                            name, ", ".join(unknown))
    return kind(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class HubConfig:
    home: Path
    prefix: str
    name: str
    database_url: str
    broker: BrokerConfig
    limits: Limits = field(default_factory=Limits)
    keys: KeyConfig = field(default_factory=KeyConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    metrics_port: int = 0  # 0: no metrics endpoint
    parent: str = ""  # name of the parent link, if any (the bridge to the city)
    assessment: dict[str, float] = field(default_factory=dict)  # 考核办法 weights (reports.DEFAULT_WEIGHTS)
    timezone: str = ""  # zone for displayed times and calendar days ("": DOCEX_TIMEZONE or Asia/Shanghai)
    # Folder (absolute, or under HUBDIR) of sealed PDFs the hub keeps verifiable: a daily job
    # adds a fresh archive timestamp to each one whose newest timestamp is about to expire.
    # The hub cannot read documents in transit; this is for what the county archives. "": none.
    seal_archive: str = ""
    # Folder (absolute, or under HUBDIR) where the hub writes each document's evidence bundle
    # once every delivery reached a final state, and renews them before their newest archive
    # timestamp expires (docex.hub.evidence_archive). "": none.
    evidence_archive: str = ""

    @property
    def ca_dir(self) -> Path:
        return self.home / "ca"

    @property
    def hub_dir(self) -> Path:
        return self.home / "hub"

    @property
    def trust_dir(self) -> Path:
        return self.home / "trust"

    @property
    def content_dir(self) -> Path:
        return self.home / "content"

    @property
    def refused_dir(self) -> Path:
        return self.home / "refused"

    @property
    def broker_ca_pem(self) -> bytes:
        """The CA that issued the broker's TLS certificate, handed to units and bridges."""
        if not self.broker.tls_ca:
            return b""
        path = self.home / self.broker.tls_ca
        return path.read_bytes() if path.exists() else b""

    def to_toml(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("home")
        return data

    def save(self) -> Path:
        path = self.home / CONFIG_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds broker passwords
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(self.to_toml(), fh)
        return path

    @classmethod
    def load(cls, home: str | os.PathLike[str]) -> HubConfig:
        root = Path(home)
        path = root / CONFIG_NAME
        if not path.exists():
            from docex.protocols.errors import DocexError

            raise DocexError("no_hub", f"{root} is not a hub home (no {CONFIG_NAME}): run `docex hub init`")
        data = tomllib.loads(path.read_text("utf-8"))
        if "prefix" not in data:
            from docex.protocols.errors import DocexError

            what = ("a unit's agent home (单位终端目录): use agent commands (inbox, send, sign-for...) with it"
                    if "address" in data else "not a hub home")
            raise DocexError("no_hub", f"{root} is {what}; this command needs the hub's HUBDIR")
        from docex.protocols import localtime

        localtime.configure(str(data.get("timezone", "")) or None)
        return cls(
            home=root,
            prefix=data["prefix"],
            name=data["name"],
            database_url=data["database_url"],
            broker=_section(BrokerConfig, data["broker"], "broker"),
            limits=_section(Limits, data.get("limits", {}), "limits"),
            keys=_section(KeyConfig, data.get("keys", {}), "keys"),
            api=_section(ApiConfig, data.get("api", {}), "api"),
            metrics_port=int(data.get("metrics_port", 0)),
            parent=str(data.get("parent", "")),
            timezone=str(data.get("timezone", "")),
            assessment={str(k): float(v) for k, v in data.get("assessment", {}).items()},
            seal_archive=str(data.get("seal_archive", "")),
            evidence_archive=str(data.get("evidence_archive", "")),
        )

    def with_changes(self, **changes: Any) -> HubConfig:
        return replace(self, **changes)
