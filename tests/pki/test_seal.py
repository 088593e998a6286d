from __future__ import annotations

import datetime as dt
import io
import socket
import subprocess
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.seal import SEAL_FIELD, _sign, apply_seal, seal_position, verify_seals
from docex.pki.tsa import TimeStampAuthority
from tests.conftest import Pki
from tests.pki.conftest import SEAL_UNIT
from tests.pki.pdfcheck import red_fraction, render_page


def _pdfsig(pdf: bytes, tmp_path: Path, nss: Path | None) -> str:
    path = tmp_path / "sealed.pdf"
    path.write_bytes(pdf)
    cmd = ["pdfsig", *(["-nssdir", f"sql:{nss}"] if nss else []), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def test_sealed_document_validates_with_pyhanko_and_pdfsig(
    pki: Pki, sealed_doc: bytes, seal_nss_db: Path | None, tmp_path: Path
) -> None:
    report = verify_seals(sealed_doc, [pki.county.certificate], expected_address=SEAL_UNIT)
    assert report.ok and report.error is None, report.to_json()
    (seal,) = report.seals
    assert seal.field_name == SEAL_FIELD and seal.address == SEAL_UNIT and seal.signer == "阳山县信息中心"
    assert seal.time_source == "tsa" and seal.intact and seal.revocation == "good"
    assert seal.pades_level == "B-LTA" and seal.chain[-1] == pki.county.certificate.subject.rfc4514_string().split("CN=")[1].split(",")[0]
    assert [s.kind for s in report.signatures] == ["seal", "document_timestamp"]
    # RFC 5035 / RFC 6211 on the seal's SignedData too (asn1crypto reading)
    from pyhanko.pdf_utils.reader import PdfFileReader

    emb = next(iter(PdfFileReader(io.BytesIO(sealed_doc)).embedded_signatures))
    attrs = {a["type"].native for a in emb.signer_info["signed_attrs"]}
    assert {"signing_certificate_v2", "cms_algorithm_protection"} <= attrs

    out = _pdfsig(sealed_doc, tmp_path, seal_nss_db)
    first = out.split("Signature #2")[0]
    assert "Signature Field Name: docex-seal" in first and "ETSI.CAdES.detached" in first
    assert "Signature Validation: Signature is Valid." in first
    if seal_nss_db is not None:  # with the county CA trusted, poppler accepts the chain too
        assert "Certificate Validation: Certificate is Trusted." in first


def test_seal_sits_at_the_signature_area_and_is_red(seal_doc: bytes, sealed_doc: bytes, tmp_path: Path) -> None:
    pos = seal_position(seal_doc)
    assert pos is not None and 40 < pos.diameter_mm < 44
    before = red_fraction(render_page(seal_doc, pos.page, tmp_path), pos.center_mm, pos.diameter_mm / 2)
    after = red_fraction(render_page(sealed_doc, pos.page, tmp_path), pos.center_mm, pos.diameter_mm / 2)
    assert before < 0.01 < 0.08 < after  # seal-red ink appeared exactly there
    assert seal_position(sealed_doc) is None  # the field is now signed


def test_issuing_officer_signs_too(
    pki: Pki, seal_doc: bytes, seal_unit: UnitCredentials, seal_image_png: bytes, seal_tsa: TimeStampAuthority
) -> None:
    person = pki.person(SEAL_UNIT, "张三")
    sealed = apply_seal(
        seal_doc, cert=seal_unit.sign_cert, key=seal_unit.sign_key, image_png=seal_image_png,
        chain=[pki.county.certificate], crls=[pki.county.crl()], timestamper=seal_tsa.timestamper(),
        person=(person.cert, person.key),
    )
    report = verify_seals(sealed, [pki.county.certificate], expected_address=SEAL_UNIT)
    assert report.ok, report.to_json()
    kinds = {s.kind: s for s in report.signatures}
    assert kinds["person"].signer == "张三" and kinds["person"].time_source == "tsa"
    assert kinds["seal"].changed_after in ("none", "signatures_only")


def test_changed_byte_in_signed_range_is_detected(pki: Pki, sealed_doc: bytes) -> None:
    data = bytearray(sealed_doc)
    at = data.index(b"stream", 1000) + 40  # inside the first page's content stream
    data[at] ^= 0x01
    report = verify_seals(bytes(data), [pki.county.certificate])
    assert not report.ok and report.error == "seal_modified"


def test_incremental_update_altering_the_page_is_detected(pki: Pki, sealed_doc: bytes, tmp_path: Path) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(sealed_doc))
    overlay = generic.StreamObject(stream_data=b"q 0 0 0 rg 100 100 300 80 re f Q")
    writer.add_stream_to_page(0, writer.add_object(overlay))
    out = io.BytesIO()
    writer.write(out)
    report = verify_seals(out.getvalue(), [pki.county.certificate])
    assert not report.ok and report.error == "seal_modified"
    assert report.seals[0].changed_after == "other"


def test_revoked_certificate_is_reported_but_earlier_seals_stay_valid(
    pki: Pki, seal_plain_pdf: bytes, seal_image_png: bytes, seal_tsa: TimeStampAuthority
) -> None:
    unit = pki.new_unit("qingyuan.yangshan.rsj", "阳山县人力资源和社会保障局")
    old_crl = pki.county.crl()  # what the agent knows when it seals

    def seal_at(clock: dt.datetime | None) -> bytes:
        tsa = TimeStampAuthority(seal_tsa.cert, seal_tsa._key, seal_tsa.chain, clock=(lambda: clock) if clock else None)
        return apply_seal(
            seal_plain_pdf, cert=unit.sign_cert, key=unit.sign_key, image_png=seal_image_png,
            chain=[pki.county.certificate], crls=[old_crl], timestamper=tsa.timestamper(),
        )

    before = seal_at(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2))
    pki.county.revoke(unit.sign_cert.serial_number, "key_compromise")
    after = seal_at(None)  # the agent has not heard of the revocation yet
    new_crl = pki.county.crl()

    report = verify_seals(after, [pki.county.certificate], [new_crl])
    assert report.error == "certificate_revoked" and report.seals[0].revocation == "revoked"
    kept = verify_seals(before, [pki.county.certificate], [new_crl])
    assert kept.ok and kept.seals[0].revocation == "revoked_later" and kept.seals[0].revoked_at

    with pytest.raises(PkiError) as err:  # and an agent that knows refuses to seal
        apply_seal(seal_plain_pdf, cert=unit.sign_cert, key=unit.sign_key, image_png=seal_image_png,
                   chain=[pki.county.certificate], crls=[new_crl], timestamper=seal_tsa.timestamper())
    assert err.value.code == "certificate_revoked"


def test_foreign_certificate_is_untrusted(
    pki: Pki, seal_plain_pdf: bytes, seal_image_png: bytes, seal_tsa: TimeStampAuthority
) -> None:
    foreign = pki.new_unit("other.county.xxzx", "外县信息中心", ca=pki.stranger)
    sealed = apply_seal(  # no CRL: our TSA does not chain to the foreign CA, so no LT data
        seal_plain_pdf, cert=foreign.sign_cert, key=foreign.sign_key, image_png=seal_image_png,
        chain=[pki.stranger.certificate], timestamper=seal_tsa.timestamper(),
    )
    report = verify_seals(sealed, [pki.county.certificate], [pki.county.crl()])
    assert report.error == "certificate_untrusted"
    with pytest.raises(PkiError) as err:  # asking for LT data that cannot be built is an error, not a crash
        apply_seal(seal_plain_pdf, cert=foreign.sign_cert, key=foreign.sign_key, image_png=seal_image_png,
                   chain=[pki.stranger.certificate], crls=[pki.stranger.crl()], timestamper=seal_tsa.timestamper())
    assert err.value.code == "seal_invalid"


def test_wrong_role_and_wrong_unit_are_refused(
    pki: Pki, seal_plain_pdf: bytes, sealed_doc: bytes, seal_unit: UnitCredentials, seal_image_png: bytes,
    seal_tsa: TimeStampAuthority,
) -> None:
    person = pki.person(SEAL_UNIT, "李四")
    with pytest.raises(PkiError) as err:  # a personal certificate is not a seal
        apply_seal(seal_plain_pdf, cert=person.cert, key=person.key, image_png=seal_image_png)
    assert err.value.code == "wrong_certificate_role"

    # Someone signs a seal field with the TSA's certificate by other means: refused on receipt.
    forged = _sign(
        seal_plain_pdf, cert=seal_tsa.cert, key=seal_tsa._key, chain=[pki.county.certificate], crls=[],
        timestamper=None, field_name=SEAL_FIELD, field_spec=None, style=None, location=SEAL_UNIT,
        reason="电子印章", lta=False,
    )
    assert verify_seals(forged, [pki.county.certificate]).error == "wrong_certificate_role"

    report = verify_seals(sealed_doc, [pki.county.certificate], expected_address="qingyuan.yangshan.jyj")
    assert report.error == "seal_address_mismatch"


def test_unsealed_and_unreadable_documents_are_named_errors(pki: Pki, seal_doc: bytes) -> None:
    assert verify_seals(seal_doc, [pki.county.certificate]).error == "seal_missing"
    assert verify_seals(b"%PDF-1.7 garbage", [pki.county.certificate]).error == "seal_invalid"


def test_explicit_position_on_a_document_from_elsewhere(
    pki: Pki, seal_plain_pdf: bytes, seal_unit: UnitCredentials, seal_image_png: bytes,
    seal_tsa: TimeStampAuthority, tmp_path: Path,
) -> None:
    sealed = apply_seal(
        seal_plain_pdf, cert=seal_unit.sign_cert, key=seal_unit.sign_key, image_png=seal_image_png,
        chain=[pki.county.certificate], crls=[pki.county.crl()], timestamper=seal_tsa.timestamper(),
        page=1, at=(60.0, 100.0),
    )
    assert verify_seals(sealed, [pki.county.certificate]).ok
    page1 = render_page(sealed, 1, tmp_path)
    assert red_fraction(page1, (60.0, 100.0), 20) > 0.08
    assert red_fraction(render_page(sealed, 2, tmp_path), (60.0, 100.0), 20) == 0
    with pytest.raises(PkiError) as err:
        apply_seal(seal_plain_pdf, cert=seal_unit.sign_cert, key=seal_unit.sign_key, image_png=seal_image_png, page=7)
    assert err.value.code == "seal_position_invalid"


def test_verification_needs_no_network(pki: Pki, sealed_doc: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    # Only the CA certificate: the CRL and chain come from inside the document (B-LT).
    report = verify_seals(sealed_doc, [pki.county.certificate])
    assert report.ok and report.seals[0].revocation == "good"
