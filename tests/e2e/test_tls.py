"""Certificates as the network's identity at the broker, on the real RabbitMQ with TLS
(`docex broker tls`, as scripts/setup-machine.sh configures it): units log in over TLS with
their client certificate (SASL EXTERNAL) and hold no password; plain logins, logins without
a certificate or with a stranger's are refused; disabling and revoking close a unit's
connections and refuse its next login; a proxy between an agent and the broker sees nothing
it could read."""

from __future__ import annotations

import socket
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pika
import pika.exceptions
import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from docex.agent.config import AgentConfig
from docex.broker import BrokerError, connect
from docex.broker.settings import amqp_url
from docex.broker.tls import BrokerNode
from docex.hub.units import set_state
from docex.pki.ca import CertificateAuthority
from tests.conftest import Pki
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, wait_until

pytestmark = pytest.mark.rabbitmq

XWB, ZFB, JW = "qingyuan.yangshan.xwb", "qingyuan.yangshan.zfb", "qingyuan.yangshan.jw"
SNIFFED = JW  # the unit whose traffic the proxy watches
TITLE = "关于开展传输加密检查的通知"
DOC_NUMBER = "阳信发〔2026〕77号"


class SniffingProxy:
    """A loopback TCP proxy that keeps every byte it forwards, both ways."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.seen = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            for s in self._socks:
                s.close()


@pytest.fixture(scope="module")
def node() -> BrokerNode:
    found = BrokerNode.installed()
    if found is None:
        pytest.fail("the local RabbitMQ has no docex TLS listener: run scripts/setup-machine.sh")
    return found


@pytest.fixture(scope="module")
def proxy(node: BrokerNode) -> Iterator[SniffingProxy]:
    p = SniffingProxy(("127.0.0.1", node.port))
    yield p
    p.close()


@pytest.fixture(scope="module")
def county(network: NetworkFactory, node: BrokerNode, proxy: SniffingProxy) -> Iterator[Network]:
    net = network(5)
    assert net.config.broker.tls_port == node.port
    # The watched unit reaches the broker only through the proxy (same host name: 127.0.0.1).
    toml = net.home(SNIFFED) / "docex.toml"
    toml.write_text(toml.read_text("utf-8").replace(f":{node.port}/", f":{proxy.port}/"), "utf-8")
    net.start_hub()
    net.start_agents(per_process=5)
    yield net


def _api(net: Network, path: str) -> list[dict[str, object]]:
    b = net.config.broker
    resp = requests.get(f"{b.management_url}/api{path}", auth=(b.management_user, b.management_password), timeout=10)
    resp.raise_for_status()
    data: list[dict[str, object]] = resp.json()
    return data


def _connections(net: Network, address: str) -> list[dict[str, object]]:
    user = net.unit_settings(address).user
    return [c for c in _api(net, f"/vhosts/{requests.utils.quote(net.config.broker.vhost, safe='')}/connections")
            if c.get("user") == user]


def test_agent_homes_hold_a_client_certificate_and_no_password(county: Network) -> None:
    for address in county.addresses:
        home = county.home(address)
        text = (home / "docex.toml").read_text("utf-8")
        url = tomllib.loads(text)["broker"]["url"]
        assert url.startswith(f"amqps://{county.unit_settings(address).user}@127.0.0.1:")
        assert ":" not in url.split("//", 1)[1].split("@", 1)[0]  # a user, no password
        cert = x509.load_pem_x509_certificate((home / "client.crt").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == county.unit_settings(address).user
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.CLIENT_AUTH]
        assert (home / "broker-ca.crt").exists() and (home / "client.key").stat().st_mode & 0o077 == 0


def test_units_exchange_over_tls_with_certificate_logins(county: Network) -> None:
    mid, files = county.send(SENDER, [ZFB, XWB], title="关于TLS交换测试的通知")
    county.wait_hub(mid, "delivered", [ZFB, XWB])
    got = county.inbox_files(ZFB, mid)
    assert {k: v for k, v in got.items() if k != "manifest.json"} == files
    for address in (SENDER, ZFB, XWB):
        conns = wait_until(lambda a=address: _connections(county, a), 30, f"{address} connected")
        assert all(c["ssl"] and c["auth_mechanism"] == "EXTERNAL" for c in conns), conns


def test_plain_logins_and_logins_without_a_trusted_certificate_are_refused(county: Network, pki: Pki,
                                                                         tmp_path: Path) -> None:
    settings = county.unit_settings(ZFB)
    vhost = county.config.broker.vhost
    for password in ("", "guest", "secret"):  # units have no password: PLAIN refuses them
        with pytest.raises(BrokerError):
            connect(replace(settings, url=amqp_url(settings.user, password, vhost)), "docex-test-plain").close()
    no_cert = replace(settings, tls_cert="", tls_key="",
                      url=amqp_url(settings.user, "x", vhost, port=county.config.broker.tls_port).replace("amqp:", "amqps:"))
    with pytest.raises(BrokerError):
        connect(no_cert, "docex-test-no-cert").close()
    # The same login name in a certificate from a CA this broker does not know.
    pki.stranger.issue_client(settings.user, tmp_path / "stranger", None, address=ZFB)
    stranger = replace(settings, tls_cert=str(tmp_path / "stranger" / "client.crt"),
                       tls_key=str(tmp_path / "stranger" / "client.key"), tls_key_password=None)
    with pytest.raises(BrokerError):
        connect(stranger, "docex-test-stranger").close()
    connect(settings, "docex-test-own").close()  # its own certificate still works


def test_disabling_closes_a_units_connections_and_refuses_it_until_enabled(county: Network) -> None:
    wait_until(lambda: _connections(county, XWB), 30, "XWB connected")
    set_state(county.config, county.db, XWB, "disabled")
    wait_until(lambda: not _connections(county, XWB), 30, "XWB's connections closed")
    with pytest.raises(BrokerError):
        connect(county.unit_settings(XWB), "docex-test-disabled").close()
    set_state(county.config, county.db, XWB, "enabled")
    connect(county.unit_settings(XWB), "docex-test-enabled").close()
    wait_until(lambda: _connections(county, XWB), 60, "XWB's agent back")


def test_revoking_a_units_certificate_closes_it_out_and_a_new_one_lets_it_back(county: Network,
                                                                               tmp_path: Path) -> None:
    home = county.home(ZFB)
    wait_until(lambda: _connections(county, ZFB), 30, "ZFB connected")
    serial = x509.load_pem_x509_certificate((home / "client.crt").read_bytes()).serial_number
    ca = CertificateAuthority.open(county.config.ca_dir, None)
    ca.revoke(serial, "key_compromise")
    # The running hub pushes the CRL to the broker, then closes the login's connections.
    wait_until(lambda: not _connections(county, ZFB), 30, "ZFB's connections closed")
    with pytest.raises(BrokerError):
        connect(county.unit_settings(ZFB), "docex-test-revoked").close()
    assert not _connections(county, ZFB)  # its agent, retrying, cannot get back in
    # A new certificate for the same unit (what approving a terminal issues) works.
    user = county.unit_settings(ZFB).user
    ca.issue_client(user, tmp_path / "new", None, address=ZFB)
    for name in ("client.crt", "client.key"):
        (home / name).write_bytes((tmp_path / "new" / name).read_bytes())
    connect(county.unit_settings(ZFB), "docex-test-reissued").close()
    wait_until(lambda: _connections(county, ZFB), 60, "ZFB's agent back with its new certificate")


def test_a_proxy_between_agent_and_broker_sees_no_login_title_or_document_number(county: Network,
                                                                               proxy: SniffingProxy) -> None:
    assert AgentConfig.load(county.home(SNIFFED)).broker_url.endswith(f":{proxy.port}/" + requests.utils.quote(
        county.config.broker.vhost, safe=""))
    out, _ = county.send(SNIFFED, [XWB], title=TITLE, doc_number=DOC_NUMBER)
    back, _ = county.send(SENDER, [SNIFFED], title=TITLE + "（回复）", doc_number=DOC_NUMBER)
    county.wait_hub(out, "delivered", [XWB])
    county.wait_hub(back, "delivered", [SNIFFED])
    seen = bytes(proxy.seen)
    assert proxy.connections >= 2 and len(seen) > 10_000  # the documents crossed the proxy
    assert seen[:1] == b"\x16"  # a TLS handshake, not "AMQP\x00\x00\x09\x01"
    for secret in (TITLE.encode(), DOC_NUMBER.encode(), "传输加密".encode(), SNIFFED.encode(),
                   county.config.broker.vhost.encode(), b"PLAIN", b"AMQP", b"docex"):
        assert secret not in seen, secret


def test_a_plain_amqp_connection_shows_what_tls_hides(county: Network) -> None:
    """The proxy test's counterpart: the same proxy on the plain port does see the login."""
    proxy = SniffingProxy(("127.0.0.1", 5672))
    try:
        with pytest.raises(pika.exceptions.AMQPError):
            pika.BlockingConnection(pika.URLParameters(
                amqp_url(county.unit_settings(ZFB).user, "a-guess", county.config.broker.vhost, port=proxy.port)))
        assert county.unit_settings(ZFB).user.encode() in bytes(proxy.seen)
    finally:
        proxy.close()
