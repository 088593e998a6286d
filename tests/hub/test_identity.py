"""The hub's trust follows its trust folder while it runs, in any of its processes (the
intake workers run no scheduler): a CA added by the link commands counts at once, for the
intake and for the next directory snapshot; a removed one stops counting; a file caught
half written never leaves the hub with half a trust. The same with hub processes running:
tests/e2e/test_link_later.py (two workers per hub)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from docex.hub import directory as hub_directory
from docex.hub import links
from docex.hub.config import HubConfig
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.pki.errors import UnknownIssuer
from docex.pki.keys import load_certificate
from docex.pki.names import CertRole
from tests.conftest import Pki

PREFIX = "qingyuan.yangshan"


@pytest.fixture
def hub_home(hub_config: HubConfig, pki: Pki) -> HubConfig:
    """A hub folder as `docex hub init` lays it out: its CA, its server certificate, trust/."""
    hub_config.ca_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "crl.pem"):
        shutil.copy(pki.county.directory / name, hub_config.ca_dir / name)
    pki.county.issue_server("阳山县电子公文交换中心 hub", hub_config.hub_dir, None, hub_prefix=PREFIX)
    hub_config.trust_dir.mkdir()
    return hub_config


@pytest.fixture
def city(pki: Pki) -> tuple[Path, Path]:
    """A CA the hub does not trust at start (the city's, before the link), and the signing
    certificate of a unit under it."""
    return pki.city.directory / "ca.crt", pki.unit_dir("qingyuan.yangshan.xwb") / "sign.crt"


def _anchored(identity: HubIdentity, ca_file: Path) -> bool:
    """Whether the hub's directory snapshot carries this CA to the agents."""
    fp = load_certificate(ca_file).fingerprint(hashes.SHA256())
    return any(x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()) == fp
               for pem in hub_directory.anchor_pems(identity))


def test_a_ca_added_by_the_link_command_counts_at_once_and_a_removed_one_stops(
        hub_home: HubConfig, db: Database, city: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    identity = HubIdentity.load(hub_home, None)  # as a worker process has it: no scheduler, no refresh call
    unit_cert = load_certificate(city[1])
    with pytest.raises(UnknownIssuer):
        identity.trust.verify(unit_cert, role=CertRole.SEAL)
    with db.session() as s:
        hub_directory.note_crls(s, identity)  # the snapshot's record of the trust as it is
    assert not _anchored(identity, city[0])

    caplog.set_level(logging.INFO, logger="docex.hub.identity")
    links.add_trust_anchor(hub_home, city[0], "link-city-ca.crt")  # `docex link create --child-ca ...`
    identity.trust.verify(unit_cert, role=CertRole.SEAL)  # the intake's check: no restart
    identity.trust.verify(unit_cert, role=CertRole.SEAL)
    # and the directory: a new version is due, carrying the CA to every agent
    with db.read() as s:
        assert hub_directory.crls_changed(s, identity)
    assert _anchored(identity, city[0])
    said = [r.getMessage() for r in caplog.records if "trust anchors changed" in r.getMessage()]
    assert said == ["trust anchors changed: +清远市信息中心 CA"]  # once, though used twice

    (hub_home.trust_dir / "link-city-ca.crt").unlink()  # the link dropped
    with pytest.raises(UnknownIssuer):
        identity.trust.verify(unit_cert, role=CertRole.SEAL)
    assert not _anchored(identity, city[0])


def test_a_trust_file_caught_half_written_keeps_the_trust_whole(
        hub_home: HubConfig, pki: Pki, city: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    identity = HubIdentity.load(hub_home, None)
    county_unit = load_certificate(pki.unit_dir("qingyuan.yangshan.xxzx") / "sign.crt")
    unit_cert = load_certificate(city[1])
    before = identity.trust
    before.verify(county_unit, role=CertRole.SEAL)
    pem = city[0].read_bytes()
    partial = hub_home.trust_dir / "link-city-ca.crt"
    partial.write_bytes(pem[: len(pem) // 2])  # a copy by hand, caught in the middle

    caplog.set_level(logging.INFO, logger="docex.hub.identity")
    for _ in range(3):
        assert identity.trust is before  # the whole trust of before, not a half
    assert not identity.refresh()
    identity.trust.verify(county_unit, role=CertRole.SEAL)
    with pytest.raises(UnknownIssuer):
        identity.trust.verify(unit_cert, role=CertRole.SEAL)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "do not load" in warned[0].getMessage()  # said once

    partial.write_bytes(pem)  # the copy finishes
    identity.trust.verify(unit_cert, role=CertRole.SEAL)
    identity.trust.verify(county_unit, role=CertRole.SEAL)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
