"""Agent homes without a hub or a broker, for the agent's unit tests: unit keys issued by
the session's county CA, a hub certificate that signs the directory snapshot and
notices, and `write_home` laying each AGENTDIR out exactly as `docex unit add` does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from docex.agent.config import AgentKeys, write_home
from docex.agent.context import AgentContext
from docex.agent.store import Outgoing
from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import UnitCredentials
from docex.pki.keys import PrivateKey, load_certificate, load_private_key
from docex.protocols import envelope
from docex.protocols.directory import DirectorySnapshot, UnitEntry, cert_pem, sign_directory
from docex.protocols.manifest import Manifest, new_message_id, utcnow_iso
from docex.protocols.notice import make_notice
from tests.conftest import Pki

PREFIX = "qingyuan.yangshan"
UNITS = {
    "qingyuan.yangshan.xxzx": "阳山县信息中心",
    "qingyuan.yangshan.zfb": "阳山县人民政府办公室",
    "qingyuan.yangshan.fgj": "阳山县发展和改革局",
}


@dataclass
class County:
    pki: Pki
    root: Path
    homes: dict[str, Path]
    states: dict[str, str] = field(default_factory=dict)
    version: int = 1

    @property
    def hub_dir(self) -> Path:
        return self.root / "hub"

    def hub_key(self) -> PrivateKey:
        return load_private_key(self.hub_dir / "server.key", None)

    def snapshot(self, *, version: int | None = None, extra: tuple[UnitEntry, ...] = (),
                 anchors: tuple[CertificateAuthority, ...] = ()) -> bytes:
        """The hub-signed directory of these units (with their current states), carrying the
        other CAs the hub trusts (`anchors`) with their CRLs."""
        units = tuple(
            UnitEntry(address=a, name=UNITS.get(a, a), state=self.states.get(a, "enabled"),
                      enc_cert=(home / "enc.crt").read_text())
            for a, home in sorted(self.homes.items())
        ) + extra
        hub_cert = load_certificate(self.hub_dir / "server.crt")
        snap = DirectorySnapshot(prefix=PREFIX, version=version or self.version, generated_at=utcnow_iso(),
                                 units=units, hub_cert=cert_pem(hub_cert),
                                 crls=tuple((ca.directory / "crl.pem").read_text() for ca in (self.pki.county, *anchors)),
                                 anchors=tuple((ca.directory / "ca.crt").read_text() for ca in anchors))
        return sign_directory(snap, hub_cert, self.hub_key())

    def publish(self) -> None:
        """Write a newer snapshot into every home (as the running service would store it)."""
        self.version += 1
        der = self.snapshot()
        for home in self.homes.values():
            (home / "directory.der").write_bytes(der)

    def context(self, address: str) -> AgentContext:
        return AgentContext.open(self.homes[address])

    def notice(self, message_id: str, event: str, code: str, recipients: tuple[str, ...] = ()) -> bytes:
        _, der = make_notice(message_id=message_id, event=event, code=code, message=f"测试: {code}",
                             recipients=recipients, hub=PREFIX, cert=load_certificate(self.hub_dir / "server.crt"),
                             key=self.hub_key())
        return der


def build_county(pki: Pki, root: Path, units: dict[str, str] | None = None) -> County:
    """Issue keys for the units (and a hub certificate) under `root`; write their homes."""
    root.mkdir(parents=True, exist_ok=True)
    pki.county.issue_server("阳山县电子公文交换中心 hub", root / "hub", None, hub_prefix=PREFIX)
    homes = {}
    for address, name in (units or UNITS).items():
        home = root / address
        pki.county.issue_unit(address, name, home, None)
        homes[address] = home
    county = County(pki, root, homes)
    der = county.snapshot()
    for address, home in homes.items():
        write_home(home, address=address, name=(units or UNITS)[address], hub_prefix=PREFIX,
                   broker_url=f"amqp://t.{address}:secret@127.0.0.1:5672/docex-offline",
                   ca_pem=(pki.county.directory / "ca.crt").read_bytes(),
                   anchors_pem=[(pki.city.directory / "ca.crt").read_bytes()],
                   crl_pem=(pki.county.directory / "crl.pem").read_bytes(), directory_der=der,
                   keys=AgentKeys(insecure_no_passphrase=True))
    return county


def outgoing(ctx: AgentContext, key: str) -> Outgoing:
    """The outbox row queued under `key` (an envelope's message id, or a receipt key)."""
    with ctx.store.session() as s:
        row = s.execute(select(Outgoing).where(Outgoing.message_id == key)).scalar_one_or_none()
    assert row is not None, f"nothing queued under {key}"
    return row


def foreign_units(root: Path, units: dict[str, str]) -> tuple[CertificateAuthority, dict[str, UnitCredentials]]:
    """Units under a CA these agents do not trust yet (as the city's is before a link, or a
    county CA that was replaced): their documents wait for it (docex.agent.receiving)."""
    ca = CertificateAuthority.init(root / "ca", "清远市电子公文交换中心（新）", None)
    creds = {}
    for address, name in units.items():
        ca.issue_unit(address, name, root / address, None)
        creds[address] = UnitCredentials.load(root / address, None)
    return ca, creds


def letter(sender: UnitCredentials, to: AgentContext, *, title: str, doc_number: str,
           files: dict[str, bytes], priority: str = "平急") -> tuple[str, bytes]:
    """An envelope from `sender` to `to`, packed directly (the sender has no agent home here)."""
    manifest = Manifest(message_id=new_message_id(), sender=sender.address, recipients=(to.creds.address,),
                        title=title, doc_number=doc_number, priority=priority)
    return manifest.message_id, envelope.pack(manifest, files, sender, [to.creds.enc_cert])
