"""`docex pki`: the information centre's certificate authority."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from docex.cli.options import (
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)
from docex.pki.ca import CertificateAuthority, read_records
from docex.pki.keys import load_crl
from docex.protocols import localtime


@click.group()
def pki() -> None:
    """证书管理 Certificate authority: issue, revoke, publish CRLs."""


@pki.command()
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False), help="CA folder.")
@click.option("--name", required=True, help="Name of the issuing body, e.g. 阳山县信息中心.")
@passphrase_options
@json_option
@handles_errors
def init(directory: str, name: str, passphrase: PassphraseSource, as_json: bool) -> None:
    """创建发证机构 Create the CA (DIR/ca.crt, DIR/ca.key, DIR/crl.pem)."""
    ca = CertificateAuthority.init(directory, name, passphrase.get())
    if as_json:
        echo_json({"ok": True, "ca": str(Path(directory) / "ca.crt"), "subject": ca.certificate.subject.rfc4514_string()})
        return
    click.echo(f"CA created: {Path(directory) / 'ca.crt'}  ({ca.certificate.subject.rfc4514_string()})")


@pki.command()
@click.option("--dir", "directory", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--unit", "address", required=True, help="Unit address, e.g. qingyuan.yangshan.xxzx.")
@click.option("--name", required=True, help="Unit name, e.g. 阳山县信息中心.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@passphrase_options
@json_option
@handles_errors
def issue(directory: str, address: str, name: str, out: str, passphrase: PassphraseSource, as_json: bool) -> None:
    """签发单位证书 Issue a unit's seal/signing and encryption certificates into OUT/."""
    pw = passphrase.get()
    issued = CertificateAuthority.open(directory, pw).issue_unit(address, name, out, pw)
    if as_json:
        echo_json({"ok": True, "address": address, "out": out, "sign_serial": f"{issued.sign_cert.serial_number:x}",
                   "enc_serial": f"{issued.enc_cert.serial_number:x}"})
        return
    click.echo(f"{address} ({name}): {out}/sign.crt serial {issued.sign_cert.serial_number:x}, "
               f"{out}/enc.crt serial {issued.enc_cert.serial_number:x}")


@pki.command("issue-person")
@click.option("--dir", "directory", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--unit", "address", required=True)
@click.option("--name", required=True, help="The person's name.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@passphrase_options
@json_option
@handles_errors
def issue_person(directory: str, address: str, name: str, out: str, passphrase: PassphraseSource, as_json: bool) -> None:
    """签发个人证书 Issue a staff member's personal certificate (个人证书) into OUT/."""
    pw = passphrase.get()
    cert = CertificateAuthority.open(directory, pw).issue_person(address, name, out, pw)
    if as_json:
        echo_json({"ok": True, "address": address, "name": name, "out": out, "serial": f"{cert.serial_number:x}"})
        return
    click.echo(f"{name} of {address}: {out}/person.crt serial {cert.serial_number:x}")


@pki.command("issue-tsa")
@click.option("--dir", "directory", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True, help="The TSA's name, e.g. 阳山县信息中心时间戳服务.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--days", "validity_days", default=1825, show_default=True, type=click.IntRange(1, 7300),
              help="Validity in days (capped at the CA's own).")
@passphrase_options
@json_option
@handles_errors
def issue_tsa(directory: str, name: str, out: str, validity_days: int, passphrase: PassphraseSource,
              as_json: bool) -> None:
    """签发时间戳服务证书 Issue the time-stamping authority's certificate (时间戳服务证书) into OUT/ (tsa.crt,
    tsa.key, ca.crt), ready for `docex tsa run --dir OUT`."""
    pw = passphrase.get()
    cert = CertificateAuthority.open(directory, pw).issue_tsa(name, out, pw, validity_days=validity_days)
    if as_json:
        echo_json({"ok": True, "name": name, "out": out, "serial": f"{cert.serial_number:x}",
                   "not_after": localtime.iso(cert.not_valid_after_utc)})
        return
    click.echo(f"时间戳服务 {name}: {out}/tsa.crt serial {cert.serial_number:x}, "
               f"valid until {cert.not_valid_after_utc:%Y-%m-%d}")


@pki.command()
@click.option("--dir", "directory", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--serial", required=True, help="Serial number in hex.")
@click.option("--reason", default="unspecified", show_default=True, help="key_compromise, affiliation_changed, superseded, cessation_of_operation, ...")
@passphrase_options
@json_option
@handles_errors
def revoke(directory: str, serial: str, reason: str, passphrase: PassphraseSource, as_json: bool) -> None:
    """吊销证书 Revoke a certificate and re-publish the CRL."""
    record = CertificateAuthority.open(directory, passphrase.get()).revoke(serial, reason)
    if as_json:
        echo_json({"ok": True, "serial": record.serial, "holder": record.holder, "role": record.role,
                   "reason": record.reason})
        return
    click.echo(f"revoked {record.serial} ({record.holder}, {record.role}): {record.reason}; CRL re-published")


@pki.command()
@click.option("--dir", "directory", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@passphrase_options
@json_option
@handles_errors
def crl(directory: str, out: str, passphrase: PassphraseSource, as_json: bool) -> None:
    """发布证书吊销列表 Publish the current CRL (PEM) to OUT."""
    path = CertificateAuthority.open(directory, passphrase.get()).publish_crl()
    Path(out).write_bytes(path.read_bytes())
    if as_json:
        echo_json({"ok": True, "out": out, "revoked": len(list(load_crl(out)))})
        return
    click.echo(f"CRL with {len(list(load_crl(out)))} revoked certificate(s) written to {out}")


@pki.command("list")
@click.option("--dir", "directory", required=True, type=click.Path(exists=True, file_okay=False))
@json_option
@handles_errors
def list_(directory: str, as_json: bool) -> None:
    """证书列表 Every certificate issued: holder, role, expiry, status."""
    records = read_records(directory)
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "serial": r.serial,
            "role": r.role,
            "address": r.address,
            "holder": r.holder,
            "not_after": r.not_after,
            "status": r.effective_status(now),
            "reason": r.reason,
        }
        for r in records
    ]
    if as_json:
        echo_json(rows)
        return
    from docex.protocols import glossary

    labels = glossary.zh(glossary.CERT_STATES)
    click.echo(f"{'serial':34} {'role':10} {'status':8} {'expires':10}  holder")
    for row in rows:
        click.echo(
            f"{row['serial']:34} {row['role']:10} {labels[row['status']]:6} {row['not_after'][:10]}  "
            f"{row['holder']} <{row['address']}>"
        )
    click.echo(f"{len(rows)} certificate(s)")
