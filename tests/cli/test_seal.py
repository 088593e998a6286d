"""`docex compose`, `docex seal draw|apply|verify` and `docex tsa run`, as an operator uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from docex.cli.main import cli
from tests.conftest import Pki

UNIT = "qingyuan.yangshan.zfb"  # 阳山县人民政府办公室, from tests/conftest.py


@pytest.fixture(scope="module")
def files(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seal-cli")
    pki.county.issue_tsa("阳山县信息中心时间戳服务", root / "tsa", None)
    (root / "ca.crt").write_bytes(pki.county.certificate.public_bytes(serialization.Encoding.PEM))
    (root / "crl.pem").write_bytes(pki.county.crl().public_bytes(serialization.Encoding.PEM))
    meta = {"issuer": "阳山县人民政府办公室", "doc_number": "阳府办〔2011〕3号", "title": "关于开展电子公文试点的通知",
            "main_recipients": ["县行政办公大楼各单位"], "date": "2011-08-20"}
    (root / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
    (root / "body.txt").write_text("定于8月25日起在县行政办公大楼开展电子公文试点。\n请各单位指定专人负责。\n", "utf-8")
    return {"root": root, "tsa": root / "tsa", "ca": root / "ca.crt", "crl": root / "crl.pem",
            "meta": root / "meta.json", "body": root / "body.txt", "unit": pki.unit_dir(UNIT)}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_draw_compose_apply_verify(files: dict[str, Path]) -> None:
    root = files["root"]
    code, out = _run("seal", "draw", "--name", "阳山县人民政府办公室", "-o", str(root / "seal.png"))
    assert code == 0 and (root / "seal.png").read_bytes()[:4] == b"\x89PNG"

    code, out = _run("compose", "--meta", str(files["meta"]), "--body", str(files["body"]), "-o", str(root / "doc.pdf"), "--json")
    assert code == 0, out
    composed = json.loads(out)
    assert composed["ok"] and composed["seal"]["page"] == 1

    code, out = _run("seal", "apply", "--unit", str(files["unit"]), str(root / "doc.pdf"), "-o", str(root / "sealed.pdf"),
                     "--image", str(root / "seal.png"), "--tsa-dir", str(files["tsa"]), "--crl", str(files["crl"]),
                     "--insecure-no-passphrase")
    assert code == 0 and "已盖章" in out, out

    code, out = _run("seal", "verify", str(root / "sealed.pdf"), "--ca", str(files["ca"]), "--expect", UNIT, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["signatures"][0]["pades_level"] == "B-LTA"

    code, out = _run("seal", "verify", str(root / "sealed.pdf"), "--ca", str(files["ca"]), "--expect", "qingyuan.yangshan.jyj")
    assert code == 2 and "seal_address_mismatch" in out and "印章" in out

    # Years later (a controlled clock): the archive timestamp's certificate has expired.
    later = "2040-01-01"
    code, out = _run("seal", "verify", str(root / "sealed.pdf"), "--ca", str(files["ca"]), "--at-time", later)
    assert code == 2 and "INDETERMINATE" in out and "seal_renewal_needed" in out, out
    # Renewal, one file and a folder (only files that are due are touched).
    code, out = _run("seal", "renew", str(root / "sealed.pdf"), "-o", str(root / "renewed.pdf"), "--ca", str(files["ca"]),
                     "--crl", str(files["crl"]), "--tsa-dir", str(files["tsa"]), "--insecure-no-passphrase")
    assert code == 0 and "已续期" in out, out
    code, out = _run("seal", "verify", str(root / "renewed.pdf"), "--ca", str(files["ca"]), "--json")
    assert code == 0 and json.loads(out)["status"] == "VALID"
    archive = root / "archive"
    archive.mkdir()
    (archive / "a.pdf").write_bytes((root / "sealed.pdf").read_bytes())
    code, out = _run("seal", "renew", "--folder", str(archive), "--ca", str(files["ca"]), "--crl", str(files["crl"]),
                     "--tsa-dir", str(files["tsa"]), "--insecure-no-passphrase", "--json")
    assert code == 0 and json.loads(out) == {"ok": True, "renewed": [], "not_due": 1, "failed": []}, out
    code, out = _run("seal", "renew", "--folder", str(archive), "--ca", str(files["ca"]), "--crl", str(files["crl"]),
                     "--tsa-dir", str(files["tsa"]), "--renewal-days", "3650", "--insecure-no-passphrase", "--json")
    assert code == 0 and json.loads(out)["renewed"] == [str(archive / "a.pdf")], out
    assert len((archive / "a.pdf").read_bytes()) > len((root / "sealed.pdf").read_bytes())


def test_apply_without_timestamp_service_is_refused(files: dict[str, Path]) -> None:
    code, out = _run("seal", "apply", "--unit", str(files["unit"]), str(files["meta"]), "-o", str(files["root"] / "x.pdf"),
                     "--insecure-no-passphrase", "--json")
    assert code == 2 and json.loads(out)["code"] == "timestamp_unavailable"


def test_compose_reports_bad_metadata(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"title": "无发文机关"}', "utf-8")
    code, out = _run("compose", "--meta", str(tmp_path / "bad.json"), "--body", str(files["body"]), "-o", str(tmp_path / "x.pdf"))
    assert code == 2 and "bad_metadata" in out


@pytest.fixture
def tsa_process(files: dict[str, Path]) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "docex.cli.main", "tsa", "run", "--dir", str(files["tsa"]), "--port", "0", "--insecure-no-passphrase"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = line.split(" on ")[1].split(" ")[0]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_agent_reaches_tsa_run_over_http(files: dict[str, Path], tsa_process: str) -> None:
    root = files["root"]
    plain = root / "plain.pdf"
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.text(20, 20, "plain")
    plain.write_bytes(bytes(pdf.output()))
    code, out = _run("seal", "apply", "--unit", str(files["unit"]), str(plain), "-o", str(root / "http.pdf"),
                     "--tsa", tsa_process, "--crl", str(files["crl"]), "--insecure-no-passphrase")
    assert code == 0, out
    code, out = _run("seal", "verify", str(root / "http.pdf"), "--ca", str(files["ca"]))
    assert code == 0 and "有效 VALID" in out and "可信时间戳" in out


def test_apply_on_an_agent_home_uses_its_tsa_url(files: dict[str, Path], tsa_process: str, tmp_path: Path) -> None:
    """`docex seal apply --unit AGENTDIR` as the README writes it: no --tsa, the agent's
    docex.toml names the hub's TSA."""
    import shutil

    unit = tmp_path / "agent"
    shutil.copytree(files["unit"], unit)
    (unit / "docex.toml").write_text(f'address = "{UNIT}"\n[seal]\ntsa_url = "{tsa_process}"\n', "utf-8")
    plain = files["root"] / "plain-agent.pdf"
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.text(20, 20, "agent home")
    plain.write_bytes(bytes(pdf.output()))
    result = CliRunner().invoke(cli, ["seal", "apply", "--unit", str(unit), str(plain), "-o", str(tmp_path / "a.pdf"),
                                      "--crl", str(files["crl"]), "--insecure-no-passphrase"],
                                env={"DOCEX_TSA_URL": None})
    assert result.exit_code == 0, result.output
    code, out = _run("seal", "verify", str(tmp_path / "a.pdf"), "--ca", str(files["ca"]))
    assert code == 0 and "可信时间戳" in out
