"""Fixtures for the seal, TSA and seal-image tests: the information centre's TSA issued by
the real county CA (from the shared `pki` fixture), a composed 公文, a sealed one, and an
NSS database trusting the county CA so that poppler's pdfsig can judge the chain."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from docex.pki.credentials import UnitCredentials
from docex.pki.seal import apply_seal
from docex.pki.seal_image import draw_seal
from docex.pki.tsa import TimeStampAuthority
from tests.conftest import Pki
from tests.samples import GBT9704_META

SEAL_UNIT = "qingyuan.yangshan.xxzx"  # 阳山县信息中心, issued by tests/conftest.py

SEAL_BODY = """为提高公文传输效率，节约行政成本，县人民政府决定在全县推行电子公文交换系统。现将有关事项通知如下。
一、总体要求
以县信息中心为枢纽，建成覆盖全县125个单位的电子公文交换网络，实现公文的电子化收发、签收和跟踪。
二、工作要求
各单位要高度重视，加强组织领导，确保按时完成各阶段工作任务。"""


@pytest.fixture(scope="session")
def seal_tsa(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> TimeStampAuthority:
    directory = tmp_path_factory.mktemp("tsa")
    pki.county.issue_tsa("阳山县信息中心时间戳服务", directory, None)
    return TimeStampAuthority.load(directory, None)


@pytest.fixture(scope="session")
def seal_unit(pki: Pki) -> UnitCredentials:
    return pki.creds(SEAL_UNIT)


@pytest.fixture(scope="session")
def seal_image_png() -> bytes:
    return draw_seal("阳山县信息中心")


@pytest.fixture(scope="session")
def seal_doc() -> bytes:
    """A composed one-page 公文 with its empty seal field (composing costs seconds: once)."""
    from docex.documents.compose import compose

    return compose(GBT9704_META, SEAL_BODY)


@pytest.fixture(scope="session")
def sealed_doc(pki: Pki, seal_doc: bytes, seal_unit: UnitCredentials, seal_image_png: bytes, seal_tsa: TimeStampAuthority) -> bytes:
    return apply_seal(
        seal_doc,
        cert=seal_unit.sign_cert,
        key=seal_unit.sign_key,
        image_png=seal_image_png,
        chain=[pki.county.certificate],
        crls=[pki.county.crl()],
        timestamper=seal_tsa.timestamper(),
    )


@pytest.fixture(scope="session")
def seal_plain_pdf() -> bytes:
    """A two-page PDF from elsewhere (no seal field), Latin text only."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_font("Helvetica", size=14)
    for n in (1, 2):
        pdf.add_page()
        pdf.text(30, 40, f"An office-system document, page {n}")
    return bytes(pdf.output())


@pytest.fixture(scope="session")
def seal_nss_db(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """An NSS database trusting the county CA (for `pdfsig -nssdir`), or None without certutil."""
    if shutil.which("certutil") is None:
        return None
    directory = tmp_path_factory.mktemp("nss")
    ca_pem = directory / "ca.crt"
    ca_pem.write_bytes(pki.county.certificate.public_bytes(serialization.Encoding.PEM))
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{directory}", "-n", "docex-county-ca", "-t", "CT,C,C", "-i", str(ca_pem)],
        check=True,
        capture_output=True,
    )
    return directory
