"""`docex broker tls`: bring the local RabbitMQ to certificate logins for the hubs that use it.

Each hub registered here has its CA in the broker's bundle (so its units and bridges can log
in with the client certificates it issues); the broker's own server certificate comes from
the first hub's CA (or the one named), and every registered hub hands that CA to its units
(`broker-ca.crt`) so they verify the broker. Hubs whose home has gone are forgotten."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from docex.broker.tls import BrokerNode, ca_fingerprint, place_crl
from docex.hub.config import HubConfig
from docex.pki.ca import CertificateAuthority
from docex.pki.keys import load_certificate
from docex.protocols.errors import DocexError

REGISTRY_NAME = "hubs.json"
BROKER_CA_NAME = "broker-ca.crt"  # in the hub home: the CA of the broker's server certificate
RENEW_BEFORE = dt.timedelta(days=30)
_pushed: dict[str, tuple[str, int, int]] = {}  # broker CRL folder -> the CRL file last copied there


@dataclass
class TlsReport:
    """What `docex broker tls` changed (empty lists: nothing to do)."""

    changes: list[str] = field(default_factory=list)
    restarted: bool = False
    pem_cache_cleared: bool = False
    port: int = 0
    hubs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"changes": self.changes, "restarted": self.restarted, "pem_cache_cleared": self.pem_cache_cleared,
                "port": self.port, "hubs": self.hubs}


def _registry(node: BrokerNode) -> dict[str, Any]:
    """{"hubs": {home: {"prefix", "ca"}}, "server": {"ca_dir"}}"""
    path = node.tls_dir / REGISTRY_NAME
    if not path.exists():
        return {"hubs": {}, "server": {}}
    data = json.loads(path.read_text("utf-8"))
    return {"hubs": dict(data.get("hubs", {})), "server": dict(data.get("server", {}))}


def _save_registry(node: BrokerNode, registry: dict[str, dict[str, Any]]) -> None:
    path = node.tls_dir / REGISTRY_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(registry, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
    tmp.replace(path)


def _names(agent_hosts: Sequence[str], hostnames: Sequence[str]) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses the server certificate must carry: this machine, localhost,
    every registered hub's `agent_host`, and what the operator adds."""
    import ipaddress

    wanted = {"localhost", "127.0.0.1", socket.gethostname(), socket.getfqdn(), *hostnames}
    wanted.update(agent_hosts)
    dns, ips = [], []
    for name in sorted(n for n in wanted if n):
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return dns, ips


def _server_ok(node: BrokerNode, issuer_pem: bytes, dns: list[str], ips: list[str]) -> str:
    """'' when the broker's certificate can stay, else why it is (re)issued."""
    if not node.server_cert.exists() or not node.server_key.exists() or not node.server_issuer.exists():
        return "no server certificate yet"
    if ca_fingerprint(node.server_issuer.read_bytes()) != ca_fingerprint(issuer_pem):
        return "another CA issues the broker's certificate now"
    cert = load_certificate(node.server_cert)
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return "it expires within 30 days"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it names no host"
    have = set(san.get_values_for_type(x509.DNSName)) | {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    missing = sorted((set(dns) | set(ips)) - have)
    return f"it does not name {', '.join(missing)}" if missing else ""


def configure(
    homes: Sequence[str | Path],
    node: BrokerNode,
    *,
    server_ca: str | Path | None = None,
    server_ca_passphrase: bytes | None = None,
    hostnames: Sequence[str] = (),
    restart: bool = True,
) -> TlsReport:
    """Register `homes` with the broker `node` and bring it to TLS with certificate logins:
    listener block, CA bundle, server certificate; each hub's config learns the TLS port and
    the broker's CA. Restarts the node only when the listener block changed; otherwise a
    changed bundle or certificate only clears RabbitMQ's PEM cache.

    The server certificate comes from `server_ca` (a CA folder, remembered) or else from the
    first hub's CA: a broker shared by hubs that come and go (tests) keeps one issuer."""
    configs = [HubConfig.load(Path(h).resolve()) for h in homes]
    report = TlsReport(port=node.port)
    with node.locked():
        registry = _registry(node)
        hubs: dict[str, dict[str, str]] = registry["hubs"]
        server: dict[str, str] = registry["server"]
        for gone in [h for h in hubs if not (Path(h) / "docex.toml").exists()]:
            report.changes.append(f"forgot hub {hubs[gone].get('prefix', '?')} ({gone}): its home is gone")
            del hubs[gone]
        for config in configs:
            key = str(config.home.resolve())
            pem = (config.ca_dir / "ca.crt").read_bytes()
            entry = {"prefix": config.prefix, "ca": ca_fingerprint(pem), "ca_dir": str(config.ca_dir.resolve()),
                     "agent_host": config.broker.agent_host}
            if hubs.get(key) != entry:
                hubs[key] = entry
                report.changes.append(f"registered hub {config.prefix} ({key})")
        if server_ca is not None:
            server["ca_dir"] = str(Path(server_ca).resolve())
        elif not (Path(server.get("ca_dir", "/nonexistent")) / "ca.crt").exists():
            if not configs:
                raise DocexError("no_hub", "name at least one hub home (--home) or the broker's CA (--server-ca)")
            server["ca_dir"] = str(configs[0].ca_dir.resolve())
        # Other hubs are known by what the registry says (their code may be newer than ours).
        known: list[dict[str, str]] = []
        cas = {}
        for home in sorted(hubs):
            entry = hubs[home]
            try:  # a hub's home may vanish while we look (test sessions sharing a broker)
                pem = (Path(entry.get("ca_dir") or Path(home) / "ca") / "ca.crt").read_bytes()
            except OSError:
                del hubs[home]
                continue
            known.append({"home": home, **entry})
            cas[ca_fingerprint(pem)] = pem
        _save_registry(node, registry)
        # The broker's own CA too: the bundle is never empty, and it issues no logins.
        server_pem = (Path(server["ca_dir"]) / "ca.crt").read_bytes()
        cas.setdefault(ca_fingerprint(server_pem), server_pem)
        added, removed = node.write_bundle(cas)
        report.changes += [f"CA bundle: added {fp}" for fp in added] + [f"CA bundle: removed {fp}" for fp in removed]
        crls: dict[str, bytes] = {}
        for ca_dir in {*(Path(e.get("ca_dir") or Path(e["home"]) / "ca") for e in known), Path(server["ca_dir"])}:
            try:  # crl_check: every CA of the bundle needs its CRL
                pem = (ca_dir / "crl.pem").read_bytes()
            except OSError:
                continue
            crls[str(ca_dir)] = pem
        if node.write_crls(crls):
            report.changes.append(f"CRLs refreshed in {node.crl_dir}")

        dns, ips = _names([e.get("agent_host", "") for e in known], hostnames)
        ca_dir = Path(server["ca_dir"])
        why = _server_ok(node, (ca_dir / "ca.crt").read_bytes(), dns, ips)
        if why:
            owner = next((c for c in configs if c.ca_dir.resolve() == ca_dir.resolve()), None)
            passphrase = owner.keys.passphrase() if owner is not None else server_ca_passphrase
            ca = CertificateAuthority.open(ca_dir, passphrase)
            # The broker reads its key unencrypted; the folder is the broker user's alone.
            ca.issue_server("docex broker", node.tls_dir, None, dns_names=dns, ip_addresses=ips)
            report.changes.append(f"server certificate issued by {ca_dir}/ca.crt ({why}) for {', '.join(dns + ips)}")
        node.hand_to_broker()

        listener_changed = node.write_listener()
        if listener_changed:
            report.changes.append(f"TLS listener configured in {node.config_file} (port {node.port})")
        if node.running():
            if listener_changed and restart:
                node.restart()
                report.restarted = True
                report.changes.append("broker restarted to open the TLS listener")
            elif added or removed or why:
                node.clear_pem_cache()
                report.pem_cache_cleared = True
                report.changes.append("broker PEM cache cleared: new handshakes use the new files")
        issuer_pem = node.server_issuer.read_bytes()
        # The hubs named here, and every registered hub when the broker's issuer changed.
        named = {str(c.home.resolve()) for c in configs}
        others = [e["home"] for e in known if e["home"] not in named] if why else []
        for config in configs:
            _point_hub_at(config, node, issuer_pem, report)
        for home in others:
            try:
                _point_hub_at(HubConfig.load(home), node, issuer_pem, report)
            except Exception as exc:  # noqa: BLE001 - a registered hub's home vanished or is not ours to read
                report.changes.append(f"hub at {home}: not updated ({type(exc).__name__}); run this with its --home")
    return report


def _point_hub_at(config: HubConfig, node: BrokerNode, issuer_pem: bytes, report: TlsReport) -> None:
    target = config.home / BROKER_CA_NAME
    if not target.exists() or target.read_bytes() != issuer_pem:
        target.write_bytes(issuer_pem)
        report.changes.append(f"hub {config.prefix}: {BROKER_CA_NAME} written")
    wanted = (node.port, BROKER_CA_NAME, str(node.crl_dir))
    if (config.broker.tls_port, config.broker.tls_ca, config.broker.tls_crl_dir) != wanted:
        replace(config, broker=replace(config.broker, tls_port=node.port, tls_ca=BROKER_CA_NAME,
                                       tls_crl_dir=str(node.crl_dir))).save()
        report.changes.append(f"hub {config.prefix}: units and bridges now log in by certificate on port {node.port}")
    report.hubs.append(config.prefix)


def push_crl(config: HubConfig) -> bool:
    """Copy this hub's current CRL to the broker (when it is on this machine and we may write
    there), so a revoked certificate's next handshake fails. True when the copy changed."""
    folder = Path(config.broker.tls_crl_dir) if config.broker.tls_crl_dir else None
    source = config.ca_dir / "crl.pem"
    if folder is None or not folder.is_dir() or not source.exists():
        return False
    stat = source.stat()
    seen = (str(source), stat.st_mtime_ns, stat.st_size)
    if _pushed.get(str(folder)) == seen:
        return False
    changed = place_crl(folder, source.read_bytes())
    _pushed[str(folder)] = seen
    return changed
