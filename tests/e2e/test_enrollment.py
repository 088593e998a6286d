"""Approved terminals on the real broker and the real hub API: a unit's terminal makes its
keys, sends certificate requests, the information centre approves the fingerprint, the
terminal fetches its certificates and exchanges documents; a second terminal for the
same unit replaces the first (whose access ends) and is audited. Hostile requests are
refused by name, and a client that keeps asking is slowed down."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import pika
import pytest
from cryptography.hazmat.primitives import hashes

from docex.agent.config import AgentConfig
from docex.agent.context import AgentContext
from docex.agent.service import broker_settings
from docex.hub import enrollment as hub_enrollment
from docex.hub.api import ApiServer
from docex.hub.config import ApiConfig
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.pki.ca import read_records
from docex.pki.keys import generate_rsa_key, load_certificate
from docex.pki.requests import make_request
from tests.cli.runner import refused, run
from tests.conftest import Pki
from tests.e2e.conftest import NetworkFactory
from tests.e2e.support import SENDER, Network, knows, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

NEW = "qingyuan.yangshan.newunit"
UNIT_PASS = {"DOCEX_PASSPHRASE": "阳山新单位自己的口令"}  # the unit's own, never the hub's
RATE = 12


@dataclass
class Centre:
    net: Network
    api: str
    root: Path

    def post(self, body: bytes) -> tuple[int, dict]:  # type: ignore[type-arg]
        req = urllib.request.Request(f"{self.api}/api/enroll", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def centre(network: NetworkFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    net = network(2)
    net.net.config = net.config.with_changes(api=ApiConfig(enroll_requests_per_10min=RATE))
    net.net.config.save()
    net.start_hub()
    port = re.search(r"API http://127\.0\.0\.1:(\d+)/", net.log_text("hub"))
    assert port, net.log_text("hub")
    net.start_agents([SENDER])
    yield Centre(net, f"http://127.0.0.1:{port.group(1)}", tmp_path_factory.mktemp("terminals"))


def _enroll(centre: Centre, home: Path) -> str:
    result = run("agent", "enroll", "--home", home, "--address", NEW, "--hub", centre.api.removeprefix("http://"),
                 env=UNIT_PASS)
    assert result.exit_code == 0, result.output
    match = re.search(r"fingerprint\s+([0-9A-F-]{39})", result.output)
    assert match, result.output
    return match.group(1)


def _approve(centre: Centre, fingerprint: str, *extra: str) -> dict:  # type: ignore[type-arg]
    result = run("unit", "approve", "--home", centre.net.hub_home, NEW, "--fingerprint", fingerprint, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def _start(centre: Centre, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCEX_PASSPHRASE", UNIT_PASS["DOCEX_PASSPHRASE"])
    centre.net.net.agents[NEW] = home
    centre.net.start_agents([NEW])


def test_enrol_approve_fetch_and_exchange(centre: Centre, monkeypatch: pytest.MonkeyPatch) -> None:
    net, home = centre.net, centre.root / "terminal-1"
    fingerprint = _enroll(centre, home)
    # Keys made and kept here, encrypted with the unit's own passphrase; no home yet.
    assert b"ENCRYPTED PRIVATE KEY" in (home / "sign.key").read_bytes() and not (home / "docex.toml").exists()
    listed = json.loads(run("unit", "requests", "--home", net.hub_home, "--json").output)
    assert [(r["address"], r["fingerprint"], r["registered"]) for r in listed] == [(NEW, fingerprint, False)]
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in (net.hub_home / "enrollment").glob("*"))
    # Not yet approved: the terminal waits.
    again = run("agent", "enroll", "--home", home, env=UNIT_PASS)
    assert again.exit_code == 0 and "waiting for approval" in again.output
    # A fingerprint that is not the one read out approves nothing.
    wrong = run("unit", "approve", "--home", net.hub_home, NEW, "--fingerprint", "0000-0000-0000-0000-0000-0000-0000-0000",
                "--name", "阳山县新单位")
    assert wrong.exit_code == 2 and "[fingerprint_mismatch]" in wrong.stderr
    assert _approve(centre, fingerprint.lower(), "--name", "阳山县新单位")["replaced"] is False
    done = run("agent", "enroll", "--home", home, env=UNIT_PASS)
    assert done.exit_code == 0 and "approved" in done.output, done.output
    config = AgentConfig.load(home)
    assert (config.address, config.name) == (NEW, "阳山县新单位")
    if net.config.broker.tls_port:  # the broker has TLS: a certificate login and no password at all
        assert config.broker_url.startswith("amqps://") and urlsplit(config.broker_url).password is None
        assert b"ENCRYPTED PRIVATE KEY" in (home / "client.key").read_bytes() and (home / "client.crt").exists()
    assert load_certificate(home / "ca.crt").subject == load_certificate(net.config.ca_dir / "ca.crt").subject
    _start(centre, home, monkeypatch)
    wait_until(lambda: knows(net.home(SENDER), NEW), 30, "the sender to know the new unit")
    mid, files = net.send(SENDER, [NEW], doc_number="阳信发〔2011〕40号")
    net.wait_sent(SENDER, mid, "delivered", [NEW])
    assert net.inbox_files(NEW, mid).items() >= files.items()
    back, _ = net.send(NEW, [SENDER], doc_number="阳新发〔2011〕1号")
    net.wait_sent(NEW, back, "delivered", [SENDER])
    entries = net.audit(NEW, "unit.add")
    assert entries and json.loads(entries[-1].detail)["fingerprint"] == fingerprint


def test_a_second_terminal_replaces_the_first(centre: Centre, monkeypatch: pytest.MonkeyPatch) -> None:
    net, first, second = centre.net, centre.root / "terminal-1", centre.root / "terminal-2"
    old_serial = format(load_certificate(first / "sign.crt").serial_number, "x")
    fingerprint = _enroll(centre, second)
    listed = json.loads(run("unit", "requests", "--home", net.hub_home, "--json").output)
    assert [(r["fingerprint"], r["registered"]) for r in listed] == [(fingerprint, True)]
    assert _approve(centre, fingerprint)["replaced"] is True
    # The first terminal's access ends: its certificates are revoked, its login refused.
    revoked = {r.serial: r for r in read_records(net.config.ca_dir)}
    assert revoked[old_serial].status == "revoked" and revoked[old_serial].reason == "superseded"
    old_ctx = AgentContext.open(first, UNIT_PASS["DOCEX_PASSPHRASE"].encode())

    def old_terminal_refused() -> bool:
        try:
            pika.BlockingConnection(broker_settings(old_ctx).parameters("docex-test-old-terminal")).close()
        except (pika.exceptions.AMQPError, OSError):
            return True
        return False

    # (over TLS the broker refuses the revoked certificate once the hub pushed its CRL)
    wait_until(old_terminal_refused, 60, "the old terminal's login to be refused")
    old_ctx.store.dispose()
    assert net.audit(NEW, "unit.terminal_replaced")
    net.stop(net.hosts[NEW])
    assert run("agent", "enroll", "--home", second, env=UNIT_PASS).exit_code == 0
    _start(centre, second, monkeypatch)
    new_enc = load_certificate(second / "enc.crt")
    sender = net.agent(SENDER)

    def sender_has_new_certificate() -> bool:
        sender.load_directories()  # as a new `docex send` reads it
        entry = sender.lookup(NEW)
        return entry is not None and entry.enc_certificate() == new_enc

    wait_until(sender_has_new_certificate, 30, "the directory to carry the new terminal's certificate")
    mid, _ = net.send(SENDER, [NEW], doc_number="阳信发〔2011〕41号")
    net.wait_sent(SENDER, mid, "delivered", [NEW])
    assert (second / "inbox" / mid).is_dir() and not (first / "inbox" / mid).exists()


TLS_UNIT = "qingyuan.yangshan.tlsunit"


@pytest.fixture(scope="module")
def https_api(centre: Centre) -> Iterator[str]:
    """The same hub's API over HTTPS with the hub's server certificate, as it is served on any
    address but localhost (here in this process, beside the hub's own plain-HTTP one)."""
    config = centre.net.config
    config = config.with_changes(api=replace(config.api, tls=True))
    db = Database(config.database_url)
    server = ApiServer(HubContext(config, db, HubIdentity.load(config, None)), "127.0.0.1", 0)
    server.start()
    try:
        assert server.tls
        yield f"https://127.0.0.1:{server.port}"
    finally:
        server.stop()
        db.dispose()


def _sha256(path: Path) -> str:
    return ":".join(f"{b:02X}" for b in load_certificate(path).fingerprint(hashes.SHA256()))


def test_enrol_over_https_pinning_the_hubs_ca(centre: Centre, https_api: str) -> None:
    net, home = centre.net, centre.root / "terminal-https"
    hub_ca = net.config.ca_dir / "ca.crt"
    first = run("agent", "enroll", "--home", home, "--address", TLS_UNIT, "--hub", https_api, "--hub-ca", hub_ca,
                "--ca-fingerprint", _sha256(hub_ca), env=UNIT_PASS)
    assert first.exit_code == 0, first.output
    assert f"sent to {https_api}" in first.output
    match = re.search(r"fingerprint\s+([0-9A-F-]{39})", first.output)
    assert match, first.output
    result = run("unit", "approve", "--home", net.hub_home, TLS_UNIT, "--fingerprint", match.group(1), "--name", "阳山县加密单位")
    assert result.exit_code == 0, result.output
    done = run("agent", "enroll", "--home", home, env=UNIT_PASS)  # over HTTPS again, the pin remembered
    assert done.exit_code == 0 and "approved" in done.output, done.output
    config = AgentConfig.load(home)
    assert (config.address, config.name) == (TLS_UNIT, "阳山县加密单位")
    assert load_certificate(home / "ca.crt").fingerprint(hashes.SHA256()) == load_certificate(hub_ca).fingerprint(hashes.SHA256())


@pytest.mark.parametrize("case", ["wrong fingerprint", "another CA, pinned", "no CA given"])
def test_a_hub_ca_that_is_not_the_announced_one_is_refused_before_anything_is_sent(
        centre: Centre, https_api: str, pki: Pki, case: str) -> None:
    hub_ca, other_ca = centre.net.config.ca_dir / "ca.crt", pki.stranger.directory / "ca.crt"
    args = {"wrong fingerprint": ["--hub-ca", hub_ca, "--ca-fingerprint", _sha256(other_ca)],
            # consistent, but the hub's certificate is not from that CA: the TLS handshake refuses
            "another CA, pinned": ["--hub-ca", other_ca, "--ca-fingerprint", _sha256(other_ca)],
            "no CA given": ["--ca-fingerprint", _sha256(hub_ca)]}[case]
    before = [r.id for r in hub_enrollment.all_requests(centre.net.config)]
    home = centre.root / f"refused-{case.replace(' ', '-').replace(',', '')}"
    result = run("agent", "enroll", "--home", home, "--address", TLS_UNIT, "--hub", https_api, *args, env=UNIT_PASS)
    refused(result, "certificate_untrusted")
    assert [r.id for r in hub_enrollment.all_requests(centre.net.config)] == before
    assert not (home / "enroll.json").exists() and not list(home.glob("*.key"))  # the folder can be used again


def test_hostile_requests_are_refused_by_name(centre: Centre) -> None:
    weak = generate_rsa_key(2048)
    import cryptography.hazmat.primitives.asymmetric.rsa as rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    def body(address: str = NEW, **csrs: str) -> bytes:
        made = {f"{k}_csr": make_request(generate_rsa_key(2048), NEW).decode() for k in ("sign", "enc", "client")}
        return json.dumps({"address": address, **made, **csrs}).encode()

    cases = {
        b"not json": "bad_request",
        body("../../etc"): "bad_address",
        body("qingyuan.other.x"): "bad_address",
        body(sign_csr=make_request(small, NEW).decode()): "weak_key",
        body(enc_csr="x" * 9000): "bad_request",
        body(client_csr=make_request(weak, NEW).decode(), enc_csr=make_request(weak, NEW).decode()): "bad_request",
        b"{" + b" " * 40_000 + b"}": "too_large",
    }
    for body, code in cases.items():
        status, answer = centre.post(body)
        assert status in (400, 413) and answer["detail"]["code"] == code, (body[:60], answer)


def test_a_client_that_keeps_asking_is_slowed_down(centre: Centre) -> None:
    statuses = [centre.post(b"{}")[0] for _ in range(RATE + 1)]
    assert statuses[-1] == 429 and 429 in statuses
