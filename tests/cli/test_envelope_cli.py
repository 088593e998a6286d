"""`docex envelope pack/inspect/open` on the session's real PKI folders (as `pki issue` wrote
them): the round trip, and each refusal as one line with its code and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import Result

from docex.pki.credentials import UnitCredentials
from tests.cli.runner import refused, run, run_binary
from tests.conftest import Pki

A, B, C, D = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj", "qingyuan.yangshan.jyj"
XWB = "qingyuan.yangshan.xwb"  # holds a city-issued certificate
INSECURE = "--insecure-no-passphrase"


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("docs")
    (root / "正文.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(3000))
    (root / "附件1.txt").write_text("参加培训人员名单", "utf-8")
    return [root / "正文.pdf", root / "附件1.txt"]


def _pack(pki: Pki, sender: str, to: list[str], out: Path, docs: list[Path], *extra: str) -> Result:
    tos = [arg for address in to for arg in ("--to", str(pki.unit_dir(address) / "enc.crt"))]
    return run("envelope", "pack", "--from", pki.unit_dir(sender), *tos, "--title", "关于电子公文交换系统试运行的通知",
               "--doc-number", "阳办发〔2011〕42号", *extra, *docs, "-o", out, INSECURE)


@pytest.fixture(scope="module")
def sealed(pki: Pki, docs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("env") / "doc.env"
    result = _pack(pki, A, [B], out, docs, "--cc", str(pki.unit_dir(C) / "enc.crt"), "--priority", "特急")
    assert result.exit_code == 0, result.output
    return out


def _open(pki: Pki, path: Path, me: str, dest: Path, *extra: str | Path) -> Result:
    return run("envelope", "open", path, "--key-dir", pki.unit_dir(me), "--ca", pki.county.directory / "ca.crt",
               "-d", dest, *extra, INSECURE)


def test_inspect_without_keys(sealed: Path) -> None:
    result = run("envelope", "inspect", sealed, "--json")
    assert result.exit_code == 0, result.output
    header = json.loads(result.stdout)
    assert (header["sender"], header["recipients"], header["cc"]) == (A, [B], [C])
    assert (header["priority"], header["doc_number"], header["protocol_version"]) == ("特急", "阳办发〔2011〕42号", "1")
    text = run("envelope", "inspect", sealed).stdout
    assert "阳办发〔2011〕42号" in text and B in text


def test_open_writes_the_files(pki: Pki, sealed: Path, docs: list[Path], tmp_path: Path) -> None:
    crl = pki.county.publish_crl()
    result = _open(pki, sealed, B, tmp_path / "inbox", "--crl", crl, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["sender"] == A and summary["signer"] == "阳山县信息中心"
    assert {p.name for p in (tmp_path / "inbox").iterdir()} == {"manifest.json", "附件1.txt", "正文.pdf"}
    for doc in docs:
        assert (tmp_path / "inbox" / doc.name).read_bytes() == doc.read_bytes()
    manifest = json.loads((tmp_path / "inbox" / "manifest.json").read_text("utf-8"))
    assert manifest["doc_number"] == "阳办发〔2011〕42号"
    # the copy recipient opens it too, in the human form
    result = _open(pki, sealed, C, tmp_path / "cc")
    assert result.exit_code == 0 and "verified" in result.stdout


def test_not_a_recipient(pki: Pki, sealed: Path, tmp_path: Path) -> None:
    refused(_open(pki, sealed, D, tmp_path / "x"), "not_a_recipient")
    assert not (tmp_path / "x").exists()


def test_destination_must_be_new_or_empty(pki: Pki, sealed: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    refused(_open(pki, sealed, B, tmp_path / "full"), "unsafe_filename")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_changed_and_garbage_envelopes(pki: Pki, sealed: Path, tmp_path: Path) -> None:
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed = tmp_path / "changed.env"
    changed.write_bytes(data)
    refused(_open(pki, changed, B, tmp_path / "x"), "signature_invalid")
    junk = tmp_path / "junk.env"
    junk.write_bytes(os.urandom(500))
    refused(run("envelope", "inspect", junk), "malformed_envelope")
    refused(_open(pki, junk, B, tmp_path / "y"), "malformed_envelope")
    proc = run_binary("envelope", "inspect", junk, "--json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout) == {"ok": False, "code": "malformed_envelope", "message": "not a docex envelope"}


def test_pack_refusals(pki: Pki, docs: list[Path], tmp_path: Path) -> None:
    refused(_pack(pki, A, [B], tmp_path / "s.env", docs, "--classification", "秘密"), "classified")
    refused(_pack(pki, A, [B], tmp_path / "s.env", docs, "--classification", "?"), "classified")  # unknown markings fail closed
    bad_priority = _pack(pki, A, [B], tmp_path / "s.env", docs, "--priority", "very")
    assert bad_priority.exit_code == 2
    assert not (tmp_path / "s.env").exists()
    result = run("envelope", "pack", "--from", tmp_path, "--to", pki.unit_dir(B) / "enc.crt", "--title", "t",
                 "--doc-number", "n", docs[0], "-o", tmp_path / "t.env", INSECURE)
    refused(result, "no_credentials")


def test_encrypted_sender_keys(pki: Pki, docs: list[Path], tmp_path: Path) -> None:
    unit = tmp_path / "unit"
    pki.county.issue_unit("qingyuan.yangshan.locked", "加密密钥单位", unit, b"unit-pw")
    args = ("envelope", "pack", "--from", unit, "--to", pki.unit_dir(B) / "enc.crt", "--title", "t",
            "--doc-number", "n", docs[0], "-o", tmp_path / "e.env")
    refused(run(*args), "no_passphrase")
    refused(run(*args, env={"DOCEX_PASSPHRASE": "wrong"}), "key_unreadable")
    assert run(*args, env={"DOCEX_PASSPHRASE": "unit-pw"}).exit_code == 0
    assert (tmp_path / "e.env").exists()


def test_revoked_sender_via_cli(pki: Pki, docs: list[Path], tmp_path: Path) -> None:
    creds: UnitCredentials = pki.new_unit("qingyuan.yangshan.clirev", "将被吊销的单位")
    env_path = tmp_path / "r.env"
    assert _pack(pki, creds.address, [B], env_path, docs).exit_code == 0
    county = pki.county.directory
    serial = f"{creds.sign_cert.serial_number:x}"
    assert run("pki", "revoke", "--dir", county, "--serial", serial, "--reason", "key_compromise", INSECURE).exit_code == 0
    assert run("pki", "crl", "--dir", county, "--out", tmp_path / "crl.pem", INSECURE).exit_code == 0
    refused(_open(pki, env_path, B, tmp_path / "x", "--crl", tmp_path / "crl.pem"), "certificate_revoked")


def test_city_issued_sender_with_both_anchors(pki: Pki, docs: list[Path], tmp_path: Path) -> None:
    env_path = tmp_path / "city.env"
    assert _pack(pki, XWB, [B], env_path, docs).exit_code == 0
    refused(_open(pki, env_path, B, tmp_path / "x"), "certificate_untrusted")
    both = _open(pki, env_path, B, tmp_path / "ok", "--ca", pki.city.directory / "ca.crt")
    assert both.exit_code == 0, both.output
