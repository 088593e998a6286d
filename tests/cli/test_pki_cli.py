"""`docex pki`: the file contract scripts rely on, passphrases, revocation, CRL, listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from docex.cli.main import cli
from docex.pki.ca import CertificateAuthority
from docex.pki.keys import load_certificate, load_crl
from docex.pki.names import CertRole, address_of, common_name, role_of
from tests.cli.runner import refused, run, run_binary

PASS = "县信息中心-口令-2011"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A CA whose key is encrypted with a passphrase read from a file."""
    root = tmp_path_factory.mktemp("cli-pki")
    secret = root / "passphrase"
    secret.write_text(PASS + "\n", "utf-8")
    result = CliRunner().invoke(cli, ["pki", "init", "--dir", str(root / "ca"), "--name", "阳山县信息中心",
                                      "--passphrase-file", str(secret)])
    assert result.exit_code == 0, result.output
    return root / "ca", secret


def test_init_writes_an_encrypted_ca(ca: tuple[Path, Path]) -> None:
    directory, _ = ca
    assert (directory / "ca.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    cert = load_certificate(directory / "ca.crt")
    assert common_name(cert) == "阳山县信息中心 CA" and role_of(cert) is CertRole.CA


def test_init_refuses_without_a_passphrase_source(tmp_path: Path) -> None:
    line = refused(run("pki", "init", "--dir", tmp_path / "ca", "--name", "x"), "no_passphrase")
    assert "--insecure-no-passphrase" in line
    assert not (tmp_path / "ca" / "ca.key").exists()


def test_no_passphrase_on_the_command_line(tmp_path: Path) -> None:
    result = run("pki", "init", "--dir", tmp_path / "ca", "--name", "x", "--passphrase", "secret")
    assert result.exit_code == 2 and "No such option" in result.output


def test_issue_file_contract_with_passphrase_env(ca: tuple[Path, Path], tmp_path: Path) -> None:
    directory, _ = ca
    out = tmp_path / "xxzx"
    result = run("pki", "issue", "--dir", directory, "--unit", "qingyuan.yangshan.xxzx", "--name", "阳山县信息中心",
                 "--out", out, "--passphrase-env", "UNIT_PW", env={"UNIT_PW": PASS})
    assert result.exit_code == 0, result.output
    assert {"sign.crt", "sign.key", "enc.crt", "enc.key"} <= {p.name for p in out.iterdir()}
    for key in ("sign.key", "enc.key"):
        assert (out / key).read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    sign, enc = load_certificate(out / "sign.crt"), load_certificate(out / "enc.crt")
    assert (role_of(sign), role_of(enc)) == (CertRole.SEAL, CertRole.ENCRYPTION)
    assert address_of(sign) == "qingyuan.yangshan.xxzx" and common_name(sign) == "阳山县信息中心"


def test_issue_person_with_default_env(ca: tuple[Path, Path], tmp_path: Path) -> None:
    directory, _ = ca
    result = run("pki", "issue-person", "--dir", directory, "--unit", "qingyuan.yangshan.xxzx", "--name", "张三",
                 "--out", tmp_path / "zhangsan", env={"DOCEX_PASSPHRASE": PASS})
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "zhangsan").iterdir()) == ["ca.crt", "person.crt", "person.key"]
    cert = load_certificate(tmp_path / "zhangsan" / "person.crt")
    assert role_of(cert) is CertRole.PERSON and common_name(cert) == "张三"


def test_wrong_or_missing_passphrase(ca: tuple[Path, Path], tmp_path: Path) -> None:
    directory, _ = ca
    args = ("pki", "issue", "--dir", directory, "--unit", "qingyuan.yangshan.jyj", "--name", "教育局", "--out", tmp_path)
    refused(run(*args, env={"DOCEX_PASSPHRASE": "wrong"}), "key_unreadable")
    refused(run(*args, "--insecure-no-passphrase"), "key_locked")
    refused(run("pki", "issue", "--dir", directory, "--unit", "Bad Address", "--name", "x", "--out", tmp_path,
                env={"DOCEX_PASSPHRASE": PASS}), "bad_address")
    assert not (tmp_path / "sign.key").exists()


def test_insecure_no_passphrase_only_when_asked(tmp_path: Path) -> None:
    result = run("pki", "init", "--dir", tmp_path / "demo", "--name", "演示", "--insecure-no-passphrase",
                 env={"DOCEX_PASSPHRASE": "ignored"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "ca.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_revoke_crl_and_list(ca: tuple[Path, Path], tmp_path: Path) -> None:
    directory, secret = ca
    pw = ("--passphrase-file", secret)
    assert run("pki", "issue", "--dir", directory, "--unit", "qingyuan.yangshan.fgj", "--name", "阳山县发展和改革局",
               "--out", tmp_path / "fgj", *pw).exit_code == 0
    serial = f"{load_certificate(tmp_path / 'fgj' / 'sign.crt').serial_number:x}"
    result = run("pki", "revoke", "--dir", directory, "--serial", serial.upper(), "--reason", "key_compromise", *pw)
    assert result.exit_code == 0, result.output
    assert serial in result.output
    refused(run("pki", "revoke", "--dir", directory, "--serial", serial, *pw), "already_revoked")
    refused(run("pki", "revoke", "--dir", directory, "--serial", "abc123", *pw), "unknown_serial")
    refused(run("pki", "revoke", "--dir", directory, "--serial", serial, "--reason", "whim", *pw), "bad_reason")

    crl_path = tmp_path / "county.crl"
    assert run("pki", "crl", "--dir", directory, "--out", crl_path, *pw).exit_code == 0
    assert crl_path.read_bytes().startswith(b"-----BEGIN X509 CRL-----")
    entry = load_crl(crl_path).get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise

    # one certificate that has already run out, issued through the library into the same CA
    CertificateAuthority.open(directory, PASS.encode()).issue_unit(
        "qingyuan.yangshan.old", "旧单位", tmp_path / "old", PASS.encode(), validity_days=0
    )
    listed = run("pki", "list", "--dir", directory, "--json")  # read-only: no passphrase needed
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    status = {(r["address"], r["role"]): r["status"] for r in rows}
    assert status[("qingyuan.yangshan.fgj", "seal")] == "revoked"
    assert status[("qingyuan.yangshan.fgj", "encryption")] == "valid"
    assert status[("qingyuan.yangshan.old", "seal")] == "expired"
    revoked = next(r for r in rows if r["serial"] == serial)
    assert (revoked["holder"], revoked["reason"]) == ("阳山县发展和改革局", "key_compromise")
    assert all(r["not_after"] for r in rows)
    text = run("pki", "list", "--dir", directory).stdout
    assert "已吊销" in text and "已过期" in text and "阳山县发展和改革局 <qingyuan.yangshan.fgj>" in text


def test_installed_command_refuses_in_one_line(ca: tuple[Path, Path]) -> None:
    directory, _ = ca
    proc = run_binary("pki", "revoke", "--dir", directory, "--serial", "abc123", env={"DOCEX_PASSPHRASE": PASS})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line] == [proc.stderr.strip()]
    assert "[unknown_serial]" in proc.stderr


def test_issue_tsa(ca: tuple[Path, Path], tmp_path: Path) -> None:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from docex.pki.tsa import TimeStampAuthority

    directory, secret = ca
    out = tmp_path / "tsa"
    result = run("pki", "issue-tsa", "--dir", directory, "--name", "阳山县信息中心时间戳服务", "--out", out,
                 "--days", "400", "--passphrase-file", secret)
    assert result.exit_code == 0, result.output
    assert "时间戳服务" in result.output
    cert = load_certificate(out / "tsa.crt")
    assert role_of(cert) is CertRole.TSA
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 401
    TimeStampAuthority.load(out, PASS.encode())  # usable as it is by `docex tsa run`
    again = run("pki", "issue-tsa", "--dir", directory, "--name", "x", "--out", out, "--passphrase-file", secret)
    refused(again, "credentials_exist")
