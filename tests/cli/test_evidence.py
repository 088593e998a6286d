"""`docex evidence verify` and `renew` as an operator uses them, with files only: ten years
on an unrenewed bundle needs renewal; `renew` refuses without a current CRL of the archive
timestamp's CA and, given one, writes a bundle that verifies ten years on."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from docex.cli.main import cli
from docex.pki.ca import CertificateAuthority
from docex.pki.timestamps import add_signature_timestamp, local_stamper
from docex.pki.tsa import TimeStampAuthority, TsaHttpServer, serve
from docex.protocols import bundle, envelope
from docex.protocols.manifest import Manifest, new_message_id
from docex.protocols.receipt import make_receipt
from tests.conftest import Pki

SENDER, RECIPIENT = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"


@pytest.fixture(scope="module")
def renewal_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CertificateAuthority, TsaHttpServer]]:
    root = tmp_path_factory.mktemp("archive-tsa")
    ca = CertificateAuthority.init(root / "ca", "长期保存证书中心", None, validity_days=365 * 30)
    ca.issue_tsa("长期保存时间戳服务", root / "tsa", None, validity_days=365 * 25)
    server = serve(TimeStampAuthority.load(root / "tsa", None), "127.0.0.1", 0)
    try:
        yield ca, server
    finally:
        server.shutdown()
        server.server_close()


def _bundle(pki: Pki, folder: Path) -> Path:
    pki.county.issue_tsa("阳山县信息中心时间戳服务", folder / "tsa", None)
    stamper = local_stamper(TimeStampAuthority.load(folder / "tsa", None))
    a, b = pki.creds(SENDER), pki.creds(RECIPIENT)
    mid = new_message_id()
    manifest = Manifest(message_id=mid, sender=a.address, recipients=(b.address,), title="关于推行电子公文交换的通知",
                        doc_number="阳信发〔2026〕8号")
    env, inner = envelope.pack_layers(manifest, {"通知.txt": "正文".encode()}, a, [b.enc_cert])
    _, signed = make_receipt(message_id=mid, recipient=b.address, event="signed_for",
                             envelope_sha256=hashlib.sha256(env).hexdigest(), cert=b.sign_cert, key=b.sign_key,
                             person="王科长")
    parts = bundle.BundleParts(message_id=mid, envelope=env, inner=inner, exported_by=a.address,
                               evidences=[add_signature_timestamp(signed, stamper)])
    path = folder / "bundle.zip"
    path.write_bytes(bundle.build(parts, stamper))
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_verify_renew_and_verify_ten_years_on(pki: Pki, renewal_tsa: tuple[CertificateAuthority, TsaHttpServer],
                                              tmp_path: Path) -> None:
    archive_ca, server = renewal_tsa
    path = _bundle(pki, tmp_path)
    county, archive = tmp_path / "county-ca.crt", tmp_path / "archive-ca.crt"
    county.write_bytes(pki.county.certificate.public_bytes(Encoding.PEM))
    archive.write_bytes(archive_ca.certificate.public_bytes(Encoding.PEM))
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.county.crl().public_bytes(Encoding.PEM))
    later = (dt.date.today() + dt.timedelta(days=3652)).isoformat()

    code, out = _run("evidence", "verify", str(path), "--ca", str(county), "--at", later)
    assert code == 1 and "INDETERMINATE" in out and "无法确定" in out, out

    renewed = tmp_path / "renewed.zip"
    code, out = _run("evidence", "renew", str(path), "-o", str(renewed), "--tsa", server.url, "--ca", str(county),
                     "--json")
    assert code == 2 and json.loads(out)["code"] == "crl_missing" and not renewed.exists(), out
    code, out = _run("evidence", "renew", str(path), "-o", str(renewed), "--tsa", server.url, "--ca", str(county),
                     "--crl", str(crl), "--json")
    assert code == 0, out
    done = json.loads(out)
    assert done["archive_timestamp"] == 2 and done["crls_of"] == ["阳山县信息中心 CA"], done
    code, out = _run("evidence", "verify", str(renewed), "--ca", str(county), "--ca", str(archive), "--at", later,
                     "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "VALID", report["problems"]
    assert any(c.startswith("renewal 2") for c in report["checks"])
    code, out = _run("evidence", "verify", str(renewed), "--ca", str(county), "--ca", str(archive), "--at", later)
    assert code == 0 and "有效 VALID" in out, out
