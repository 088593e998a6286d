"""`docex broker tls` on files only (a node that is not running): the managed blocks of
rabbitmq.conf and advanced.config, the CA bundle and CRL folder, the server certificate,
the hubs' configs, and saying what changed (nothing, the second time)."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from docex.broker import BrokerError
from docex.broker.tls import BrokerNode, ca_fingerprint
from docex.hub.broker_tls import BROKER_CA_NAME, configure
from docex.hub.config import BrokerConfig, HubConfig, KeyConfig
from docex.pki.ca import CertificateAuthority

NOT_RUNNING = "docex-test-absent@localhost"  # rabbitmqctl cannot reach it: files only


def _hub(root: Path, prefix: str) -> HubConfig:
    config = HubConfig(home=root, prefix=prefix, name=prefix, database_url=f"sqlite:///{root / 'hub.db'}",
                       broker=BrokerConfig(url="amqp://hub:pw@127.0.0.1:5672/v", vhost="v"),
                       keys=KeyConfig(insecure_no_passphrase=True))
    root.mkdir(parents=True)
    CertificateAuthority.init(config.ca_dir, prefix, None)
    config.save()
    return config


@pytest.fixture
def node(tmp_path: Path) -> BrokerNode:
    conf = tmp_path / "etc" / "rabbitmq.conf"
    conf.parent.mkdir()
    conf.write_text("listeners.tcp.local = 127.0.0.1:5672\n")
    return BrokerNode(config_file=conf, node=NOT_RUNNING, listen="127.0.0.1:5671")


def test_listener_block_keeps_the_rest_of_rabbitmq_conf_and_is_written_once(node: BrokerNode) -> None:
    assert node.write_listener() is True
    text = node.config_file.read_text()
    assert text.startswith("listeners.tcp.local = 127.0.0.1:5672\n")
    for line in ("listeners.ssl.default = 127.0.0.1:5671", "auth_mechanisms.1 = EXTERNAL",
                 "ssl_cert_login_from = common_name"):
        assert line in text
    adv = node.advanced_config.read_text()
    for term in ("{verify, verify_peer}", "{fail_if_no_peer_cert, true}", "{crl_check, peer}", "ssl_crl_hash_dir"):
        assert term in adv
    assert node.write_listener() is False  # unchanged: no restart due
    assert BrokerNode.installed(node.config_file) == BrokerNode(config_file=node.config_file, listen="127.0.0.1:5671")
    moved = BrokerNode(config_file=node.config_file, node=NOT_RUNNING, listen="5681")
    assert moved.write_listener() is True
    assert node.config_file.read_text().count("# BEGIN docex tls") == 1


def test_an_advanced_config_docex_did_not_write_is_left_alone(node: BrokerNode) -> None:
    node.advanced_config.write_text("[{rabbit, [{log_levels, [{connection, info}]}]}].\n")
    with pytest.raises(BrokerError, match="not written by docex"):
        node.write_listener()
    assert "log_levels" in node.advanced_config.read_text()


def test_listen_must_be_a_port_or_ip_and_port(tmp_path: Path) -> None:
    with pytest.raises(BrokerError):
        BrokerNode(config_file=tmp_path / "r.conf", listen="0.0.0.0:5671; rm -rf /")


def test_configure_registers_hubs_issues_the_server_certificate_and_says_what_changed(
        node: BrokerNode, tmp_path: Path) -> None:
    county = _hub(tmp_path / "county", "qingyuan.yangshan")
    city = _hub(tmp_path / "city", "qingyuan")
    report = configure([county.home, city.home], node, hostnames=("exchange.yangshan.gov.cn",))
    assert not report.restarted and not report.pem_cache_cleared  # the node is not running
    assert any("TLS listener configured" in c for c in report.changes)
    bundle = node.bundle.read_text()
    for hub in (county, city):
        assert (hub.ca_dir / "ca.crt").read_text().strip() in bundle
        reloaded = HubConfig.load(hub.home)
        assert (reloaded.broker.tls_port, reloaded.broker.tls_ca) == (5671, BROKER_CA_NAME)
        assert (hub.home / BROKER_CA_NAME).read_bytes() == (county.ca_dir / "ca.crt").read_bytes()
    assert len(list(node.crl_dir.glob("*.r0"))) == 2
    cert = x509.load_pem_x509_certificate(node.server_cert.read_bytes())
    assert cert.issuer == x509.load_pem_x509_certificate((county.ca_dir / "ca.crt").read_bytes()).subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "exchange.yangshan.gov.cn"} <= set(san.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert node.server_key.stat().st_mode & 0o077 == 0

    again = configure([county.home, city.home], node, hostnames=("exchange.yangshan.gov.cn",))
    assert again.changes == []

    shutil.rmtree(city.home)  # a hub that is gone is forgotten, its CA leaves the bundle
    third = configure([county.home], node, hostnames=("exchange.yangshan.gov.cn",))
    assert any("forgot hub qingyuan " in c for c in third.changes)
    assert ca_fingerprint((county.ca_dir / "ca.crt").read_bytes()) in {p.stem for p in (node.tls_dir / "cacerts").glob("*.pem")}
    assert len(list((node.tls_dir / "cacerts").glob("*.pem"))) == 1


def test_cas_named_alike_keep_their_own_crl_files_and_a_new_crl_replaces_its_own(node: BrokerNode,
                                                                                   tmp_path: Path) -> None:
    """Test networks name their hubs alike: their CAs still differ in name (a serial number),
    so RabbitMQ finds each CA's CRL by its issuer hash; a new CRL replaces only its own file."""
    from docex.broker.tls import place_crl

    first = CertificateAuthority.init(tmp_path / "a", "阳山县电子公文交换中心", None)
    second = CertificateAuthority.init(tmp_path / "b", "阳山县电子公文交换中心", None)
    assert first.certificate.subject != second.certificate.subject
    node.write_crls({"a": (tmp_path / "a" / "crl.pem").read_bytes(), "b": (tmp_path / "b" / "crl.pem").read_bytes()})
    before = {p.name: p.read_bytes() for p in node.crl_dir.iterdir()}
    assert len(before) == 2
    second.issue_client("t.qingyuan.yangshan.zfb", tmp_path / "c", None, address="qingyuan.yangshan.zfb")
    second.revoke(x509.load_pem_x509_certificate((tmp_path / "c" / "client.crt").read_bytes()).serial_number)
    new = (tmp_path / "b" / "crl.pem").read_bytes()
    assert place_crl(node.crl_dir, new) is True
    after = {p.name: p.read_bytes() for p in node.crl_dir.iterdir()}
    assert sorted(after) == sorted(before)  # replaced in place, nothing added
    assert new in after.values() and (tmp_path / "a" / "crl.pem").read_bytes() in after.values()
    assert place_crl(node.crl_dir, new) is False
