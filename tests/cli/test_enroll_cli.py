"""The unit's own passphrase: `docex key passwd` re-encrypts the unit's keys (a wrong old
passphrase changes nothing); listing `inbox` and `sent` needs no passphrase, sending does.
Enrolment reaches a hub on another machine over HTTPS only, with the CA the information
centre announced (tests/e2e/test_enrollment.py enrols over HTTPS against a running hub)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from docex.agent.config import AgentConfig, AgentKeys
from docex.agent.enrollment import hub_url
from docex.agent.keys import change_passphrase
from docex.pki.errors import PkiError
from docex.pki.keys import load_private_key
from tests.agent.homes import build_county
from tests.cli.runner import refused, run
from tests.conftest import Pki

XXZX = "qingyuan.yangshan.xxzx"


@pytest.fixture
def home(pki: Pki, tmp_path: Path) -> Path:
    county = build_county(pki, tmp_path / "county", {XXZX: "阳山县信息中心"})
    home = county.homes[XXZX]
    change_passphrase(home, None, b"old-pass")
    config = AgentConfig.load(home)
    replace(config, keys=AgentKeys()).save()  # the unit's passphrase comes from $DOCEX_PASSPHRASE
    return home


def test_listing_needs_no_passphrase_but_sending_does(home: Path, tmp_path: Path) -> None:
    assert run("inbox", "--home", home).exit_code == 0
    assert run("sent", "--home", home, "--json").exit_code == 0
    note = tmp_path / "n.txt"
    note.write_text("x")
    refused(run("send", "--home", home, "--to", XXZX, "--title", "t", "--doc-number", "n", note), "no_passphrase")


def test_key_passwd_changes_the_passphrase(home: Path) -> None:
    result = run("key", "passwd", "--home", home, "--new-passphrase-env", "NEW_PASS",
                 env={"DOCEX_PASSPHRASE": "old-pass", "NEW_PASS": "单位新口令"})
    assert result.exit_code == 0, result.output
    for name in ("sign.key", "enc.key"):
        load_private_key(home / name, "单位新口令".encode())
        with pytest.raises(PkiError):
            load_private_key(home / name, b"old-pass")
    assert not list(home.glob("*.new"))


def test_a_wrong_old_passphrase_changes_nothing(home: Path) -> None:
    before = (home / "sign.key").read_bytes()
    result = run("key", "passwd", "--home", home, "--new-passphrase-env", "NEW_PASS",
                 env={"DOCEX_PASSPHRASE": "wrong", "NEW_PASS": "x"})
    refused(result, "key_unreadable")
    assert (home / "sign.key").read_bytes() == before


def test_the_hub_is_reached_over_https_unless_it_is_on_this_machine() -> None:
    assert hub_url("10.20.30.40") == "https://10.20.30.40:8470"
    assert hub_url("hub.yangshan.gov.cn:9443") == "https://hub.yangshan.gov.cn:9443"
    assert hub_url("127.0.0.1:8470") == "http://127.0.0.1:8470" and hub_url("localhost") == "http://localhost:8470"
    assert hub_url("https://10.20.30.40:8470/") == "https://10.20.30.40:8470"


@pytest.mark.parametrize("hub", ["http://10.20.30.40:8470", "http://hub.yangshan.gov.cn"])
def test_plain_http_to_another_machine_is_refused_before_any_key_is_made(tmp_path: Path, hub: str) -> None:
    terminal = tmp_path / "terminal"
    result = run("agent", "enroll", "--home", terminal, "--address", XXZX, "--hub", hub, "--insecure-no-passphrase")
    assert "https://" in refused(result, "tls_required")
    assert not terminal.exists()


def test_a_hub_ca_file_that_is_not_the_announced_ca_is_refused_before_any_key_is_made(pki: Pki, tmp_path: Path) -> None:
    terminal = tmp_path / "terminal"
    announced = pki.county.certificate.fingerprint(hashes.SHA256()).hex()
    result = run("agent", "enroll", "--home", terminal, "--address", XXZX, "--hub", "https://10.20.30.40:8470",
                 "--hub-ca", pki.stranger.directory / "ca.crt", "--ca-fingerprint", announced, "--insecure-no-passphrase")
    refused(result, "certificate_untrusted")
    assert not terminal.exists()
