"""Changes after sealing and joint issuance (联合行文): a filled form field is reported as a
change, a later signature whose appearance covers an earlier seal is flagged, and a
document sealed by several units verifies with all of them expected (and only then)."""

from __future__ import annotations

import io

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer

from docex.pki.credentials import UnitCredentials
from docex.pki.seal import apply_seal, verify_seals
from docex.pki.tsa import TimeStampAuthority
from tests.conftest import Pki

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"


def _seal(pki: Pki, pdf: bytes, unit: str, png: bytes, tsa: TimeStampAuthority, **where: object) -> bytes:
    creds: UnitCredentials = pki.creds(unit)
    return apply_seal(pdf, cert=creds.sign_cert, key=creds.sign_key, image_png=png, chain=[pki.county.certificate],
                      crls=[pki.county.crl()], timestamper=tsa.timestamper(), **where)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def joint(pki: Pki, sealed_doc: bytes, seal_image_png: bytes, seal_tsa: TimeStampAuthority) -> bytes:
    """Sealed by 县信息中心 at the seal field, then by 县政府办 in the blank top margin (联合行文;
    compose has no second seal field yet, and over text it would be flagged, see below)."""
    return _seal(pki, sealed_doc, ZFB, seal_image_png, seal_tsa, page=1, at=(150.0, 22.0))


def test_joint_issue_verifies_with_every_issuer_expected(pki: Pki, joint: bytes) -> None:
    anchors = [pki.county.certificate]
    report = verify_seals(joint, anchors, expected_address=[XXZX, ZFB])
    assert report.ok, report.message
    assert {s.address for s in report.seals} == {XXZX, ZFB}
    assert not report.warnings  # apart, on blank paper: nothing covers anything


def test_joint_issue_names_the_missing_and_the_unexpected(pki: Pki, joint: bytes) -> None:
    anchors = [pki.county.certificate]
    missing = verify_seals(joint, anchors, expected_address=[XXZX, ZFB, FGJ])
    assert missing.error == "seal_missing" and FGJ in missing.message
    assert verify_seals(joint, anchors, expected_address=[XXZX]).error == "seal_address_mismatch"


def test_a_later_seal_over_the_first_is_flagged(
    pki: Pki, sealed_doc: bytes, seal_image_png: bytes, seal_tsa: TimeStampAuthority
) -> None:
    first = verify_seals(sealed_doc, [pki.county.certificate]).seals[0]
    assert first.page is not None and first.rect is not None
    x0, y0, x1, y1 = first.rect
    page_h = 841.89
    center_mm = ((x0 + x1) / 2 * 25.4 / 72, (page_h - (y0 + y1) / 2) * 25.4 / 72)
    covered = _seal(pki, sealed_doc, ZFB, seal_image_png, seal_tsa, page=first.page, at=center_mm)
    report = verify_seals(covered, [pki.county.certificate], expected_address=[XXZX, ZFB])
    assert any("盖住了" in w and "covers an earlier seal" in w for w in report.warnings), report.warnings


def _with_text_field(pdf: bytes) -> bytes:
    """The PDF with an empty text field 批办意见 on page 1 (as office systems add them)."""
    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(pdf), strict=False))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    field = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Annot"),
        generic.NameObject("/Subtype"): generic.NameObject("/Widget"),
        generic.NameObject("/FT"): generic.NameObject("/Tx"),
        generic.NameObject("/T"): generic.TextStringObject("批办意见"),
        generic.NameObject("/Rect"): generic.ArrayObject([generic.FloatObject(v) for v in (80, 80, 300, 110)]),
        generic.NameObject("/F"): generic.NumberObject(4),
        generic.NameObject("/P"): page_ref,
        generic.NameObject("/DA"): generic.pdf_string("/Helv 10 Tf 0 g"),
    })
    ref = writer.add_object(field)
    page = page_ref.get_object()
    page[generic.NameObject("/Annots")] = generic.ArrayObject([ref])
    writer.root[generic.NameObject("/AcroForm")] = generic.DictionaryObject(
        {generic.NameObject("/Fields"): generic.ArrayObject([ref])}
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _fill(pdf: bytes, value: str) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    for ref in writer.root["/AcroForm"]["/Fields"]:
        field = ref.get_object()
        if field.get("/FT") == "/Tx":
            field[generic.NameObject("/V")] = generic.TextStringObject(value)
            writer.update_container(field)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_filling_a_form_field_after_sealing_is_reported(
    pki: Pki, seal_plain_pdf: bytes, seal_image_png: bytes, seal_tsa: TimeStampAuthority
) -> None:
    sealed = _seal(pki, _with_text_field(seal_plain_pdf), XXZX, seal_image_png, seal_tsa, page=2, at=(150.0, 200.0))
    assert not verify_seals(sealed, [pki.county.certificate]).warnings
    filled = _fill(sealed, "同意，请各单位照办。")
    report = verify_seals(filled, [pki.county.certificate], expected_address=XXZX)
    assert report.seals[0].changed_after == "form_filling"
    assert any("表单填写" in w for w in report.warnings), report.warnings


def test_a_later_signature_over_sealed_text_is_flagged(
    pki: Pki, seal_plain_pdf: bytes, seal_image_png: bytes, seal_tsa: TimeStampAuthority
) -> None:
    sealed = _seal(pki, seal_plain_pdf, XXZX, seal_image_png, seal_tsa, page=2, at=(150.0, 200.0))
    beside = _seal(pki, sealed, ZFB, seal_image_png, seal_tsa, page=1, at=(150.0, 200.0))  # blank area
    assert not verify_seals(beside, [pki.county.certificate], expected_address=[XXZX, ZFB]).warnings
    over = _seal(pki, sealed, ZFB, seal_image_png, seal_tsa, page=1, at=(60.0, 40.0))  # on "An office-system document"
    report = verify_seals(over, [pki.county.certificate], expected_address=[XXZX, ZFB])
    assert report.ok  # still valid seals, but flagged
    assert any("covers page text" in w and "office-system" in w for w in report.warnings), report.warnings
