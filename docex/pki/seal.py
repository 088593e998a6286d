"""Electronic seals (电子印章) on PDF: PAdES signatures with a visible seal impression.

Sealing (:func:`apply_seal`) signs the PDF with the unit's seal certificate (机构证书,
role SEAL) as an ETSI.CAdES.detached (PAdES) signature whose widget shows the seal
impression (印模). Optionally the issuing officer (签发人) signs first with a personal
certificate (invisible signature). Every signature carries an RFC 3161 timestamp from the
information centre's TSA; when CRLs are given the certificate chain and CRLs go into the
document security store (PAdES B-LT), and a document timestamp over them makes it B-LTA.
So the document verifies offline, years later, with nothing but the county CA certificate.

Where the seal goes: an empty signature field named :data:`SEAL_FIELD` (``compose`` puts
one over 署名/成文日期) if the PDF has one; else ``page``/``at`` (seal centre, mm from
the page's top-left corner); else the last page at :data:`DEFAULT_CENTER` (fractions of
the page size: lower right, where the signer line usually is).

Claims: each signature's ``/Location`` names the unit address it is made for and
``/Name`` the unit's (or person's) name. Verification (:func:`verify_seals`) refuses a
seal whose certificate is not a seal certificate of that unit, or of ``expected_address``.

Verification policy (docex's, documented for auditors): integrity and the modification
analysis come from pyHanko (changes after sealing other than further signatures, DSS and
document timestamps are ``seal_modified``); the certificate is verified with
``docex.pki.trust.TrustStore`` *at the time of the signature's trusted timestamp* (or now,
when there is none), against the newest CRL per issuer among those supplied and those
embedded. A certificate revoked after the timestamp leaves the seal valid (the report
says when it was revoked); revoked before it, the seal is ``certificate_revoked``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from PIL import Image, UnidentifiedImageError
from pyhanko.pdf_utils.generic import ArrayObject
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer
from pyhanko.sign import fields, signers
from pyhanko.sign.attributes import CMSAlgorithmProtectionProvider
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps import TimeStamper, TimestampRequestError
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko.stamp import StaticStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import PathError, ValidationError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from docex.pki.errors import PkiError
from docex.pki.keys import PrivateKey
from docex.pki.names import CertRole, address_of, common_name, role_of
from docex.pki.trust import TrustStore

log = logging.getLogger(__name__)

SEAL_FIELD = "docex-seal"  # the empty field compose() leaves over 署名/成文日期
SIGNER_FIELD = "docex-signer"  # the 签发人's (invisible) signature
SEAL_DIAMETER_MM = 42.0
DEFAULT_CENTER = (0.67, 0.66)  # seal centre as fractions of page width/height from top-left
MM = 72 / 25.4  # PDF points per mm

# The verdict codes, most serious first: the overall error is the first one found.
ERROR_ORDER = (
    "seal_modified",
    "seal_invalid",
    "certificate_revoked",
    "certificate_untrusted",
    "certificate_expired",
    "wrong_certificate_role",
    "seal_address_mismatch",
    "crl_missing",
    "seal_missing",
    "seal_renewal_needed",
)
# Changes after sealing that leave the seal valid but must be shown (pyHanko's levels).
REPORTED_CHANGES = ("form_filling", "annotations")
RENEWAL_MARGIN = dt.timedelta(days=60)  # renew the archive timestamp this long before it expires
MESSAGES = {
    None: "印章有效 (seal valid)",
    "seal_modified": "盖章后文件被修改 (document changed after sealing)",
    "seal_invalid": "印章签名无效 (seal signature invalid)",
    "certificate_revoked": "印章证书已被吊销 (certificate revoked)",
    "certificate_untrusted": "印章证书不是受信任的 CA 签发的 (certificate not from a trusted CA)",
    "certificate_expired": "印章证书在盖章时不在有效期内 (certificate not valid at sealing time)",
    "wrong_certificate_role": "所用证书不是单位印章证书 (not a unit seal certificate)",
    "seal_address_mismatch": "印章证书不属于所声称的单位 (seal certificate of another unit)",
    "crl_missing": "无法检查证书吊销状态 (no CRL to check revocation)",
    "seal_missing": "文件没有电子印章 (document carries no seal)",
    "seal_renewal_needed": "存证时间戳即将或已经过期，需续期 (archive timestamp expiring: renew, `docex seal renew`)",
    "crl_stale": "证书吊销列表已过期 (CRL past its next update)",
}


class SealError(PkiError):
    """Sealing refused or impossible; ``code`` as in :data:`ERROR_ORDER` or e.g.
    ``pdf_unreadable``, ``seal_image_invalid``, ``timestamp_unavailable``."""


# -- conversions ------------------------------------------------------------------------------
def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _crypto_cert(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _asn1_crl(crl: x509.CertificateRevocationList) -> asn1_crl.CertificateList:
    return asn1_crl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))


def _asn1_key(key: PrivateKey) -> asn1_keys.PrivateKeyInfo:
    # In memory only, for pyHanko's signer: never written anywhere.
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return asn1_keys.PrivateKeyInfo.load(der)


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _reader(pdf: bytes) -> PdfFileReader:
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        if reader.encrypted:
            raise SealError("pdf_unreadable", "PDF 已加密，无法盖章或验章 (encrypted PDF)")
        reader.root  # noqa: B018 - fail here on a broken trailer, not later
        return reader
    except (PdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise SealError("pdf_unreadable", f"不是可读的 PDF 文件 (unreadable PDF: {exc})") from exc


def _page_size(reader: PdfFileReader, page_ix: int) -> tuple[float, float]:
    node = reader.find_page_for_modification(page_ix)[0].get_object()  # type: ignore[no-untyped-call]
    box = None
    while node is not None and box is None:  # /MediaBox may be inherited from /Pages
        box = node.get("/MediaBox")
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    box = box or [0, 0, 595.276, 841.89]  # A4 when the file does not say
    x0, y0, x1, y1 = (float(v) for v in box)
    return x1 - x0, y1 - y0


def _box(center_mm: tuple[float, float], diameter_mm: float, page_h_pt: float) -> tuple[int, int, int, int]:
    cx, cy = center_mm[0] * MM, page_h_pt - center_mm[1] * MM
    r = diameter_mm * MM / 2
    return (round(cx - r), round(cy - r), round(cx + r), round(cy + r))


# -- seal position ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SealPosition:
    page: int  # 1-based
    center_mm: tuple[float, float]  # from the page's top-left corner
    diameter_mm: float


def add_seal_field(
    pdf: bytes,
    *,
    page: int,
    center_mm: tuple[float, float],
    diameter_mm: float = SEAL_DIAMETER_MM,
) -> bytes:
    """The PDF rewritten (not an incremental update) with an empty signature field
    :data:`SEAL_FIELD` marking where the seal goes. ``page`` is 1-based."""
    reader = _reader(pdf)
    n_pages = int(reader.root["/Pages"]["/Count"])
    if not 1 <= page <= n_pages:
        raise SealError("seal_position_invalid", f"page {page} is not in 1..{n_pages}")
    _, height = _page_size(reader, page - 1)
    writer = copy_into_new_writer(reader)
    fields.append_signature_field(
        writer,
        fields.SigFieldSpec(SEAL_FIELD, on_page=page - 1, box=_box(center_mm, diameter_mm, height)),
    )
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def seal_position(pdf: bytes) -> SealPosition | None:
    """Where the PDF asks for its seal: the empty :data:`SEAL_FIELD`, if there is one."""
    reader = _reader(pdf)
    for name, _value, ref in fields.enumerate_sig_fields(reader, filled_status=False, with_name=SEAL_FIELD):
        if name != SEAL_FIELD:
            continue
        widget = ref.get_object()
        rect = [float(v) for v in widget.get("/Rect", [])]
        page_ref = widget.get_value_as_reference("/P") if "/P" in widget else None
        if len(rect) != 4:
            return None
        page_ix = 0
        for ix in range(int(reader.root["/Pages"]["/Count"])):
            page_obj, _ = reader.find_page_for_modification(ix)  # type: ignore[no-untyped-call]
            if page_ref is not None and page_obj == page_ref:
                page_ix = ix
                break
            annots = page_obj.get_object().get("/Annots")
            if isinstance(annots, ArrayObject) and any(a.get_object() is widget or a == ref for a in annots):
                page_ix = ix
                break
        _, height = _page_size(reader, page_ix)
        x0, y0, x1, y1 = rect
        return SealPosition(
            page=page_ix + 1,
            center_mm=((x0 + x1) / 2 / MM, (height - (y0 + y1) / 2) / MM),
            diameter_mm=(x1 - x0) / MM,
        )
    return None


# -- sealing ------------------------------------------------------------------------------------
def _validation_context(
    anchors: Sequence[x509.Certificate],
    others: Iterable[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    moment: dt.datetime | None = None,
) -> ValidationContext:
    return ValidationContext(
        trust_roots=[_asn1_cert(c) for c in anchors],
        other_certs=[_asn1_cert(c) for c in others],
        crls=[_asn1_crl(c) for c in crls],
        moment=moment,
        allow_fetching=False,  # the county intranet has no CRL/OCSP endpoints
        revocation_mode="soft-fail",
        retroactive_revinfo=True,
    )


def _stamp_style(image_png: bytes) -> StaticStampStyle:
    try:
        img: Image.Image = Image.open(io.BytesIO(image_png))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SealError("seal_image_invalid", f"印模不是可读的图片 (unreadable seal image: {exc})") from exc
    if img.mode not in ("RGBA", "RGB", "LA", "L"):
        img = img.convert("RGBA")
    return StaticStampStyle(background=PdfImage(img), border_width=0, background_opacity=1.0)


class _Signer(signers.SimpleSigner):
    """pyHanko's signer plus the RFC 6211 CMSAlgorithmProtection signed attribute (docex
    puts it on every SignedData). pyHanko leaves it out of PDF signatures only for want of
    certainty that PAdES allows it; ETSI EN 319 122-1 permits further signed attributes,
    and pyHanko, pdfsig and OpenSSL accept the result (tests/pki/test_seal.py)."""

    def _signed_attr_providers(self, data_digest: bytes, digest_algorithm: str, *args: Any, **kwargs: Any) -> Any:
        yield from super()._signed_attr_providers(data_digest, digest_algorithm, *args, **kwargs)
        yield CMSAlgorithmProtectionProvider(
            digest_algo=digest_algorithm, signature_algo=self.get_signature_mechanism_for_digest(digest_algorithm)
        )


def _sign(
    pdf: bytes,
    *,
    cert: x509.Certificate,
    key: PrivateKey,
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    timestamper: TimeStamper | None,
    field_name: str,
    field_spec: fields.SigFieldSpec | None,
    style: StaticStampStyle | None,
    location: str,
    reason: str,
    lta: bool,
) -> bytes:
    anchors = [c for c in chain if _is_self_signed(c)]
    others = [c for c in chain if not _is_self_signed(c)]
    embed = bool(crls) and bool(anchors)
    signer = _Signer(
        signing_cert=_asn1_cert(cert),
        signing_key=_asn1_key(key),
        cert_registry=SimpleCertificateStore.from_certs([_asn1_cert(c) for c in chain]),  # type: ignore[no-untyped-call]
    )
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        name=common_name(cert),
        location=location,
        reason=reason,
        embed_validation_info=embed,
        use_pades_lta=embed and lta and timestamper is not None,
        validation_context=_validation_context(anchors, others, crls) if embed else None,
    )
    pdf_signer = signers.PdfSigner(
        meta, signer, timestamper=timestamper, stamp_style=style, new_field_spec=field_spec
    )
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        return bytes(pdf_signer.sign_pdf(writer).getvalue())
    except TimestampRequestError as exc:
        raise SealError("timestamp_unavailable", f"时间戳服务不可用 (TSA refused or unreachable: {exc})") from exc
    except OSError as exc:
        raise SealError("timestamp_unavailable", f"时间戳服务不可用 (TSA unreachable: {exc})") from exc
    except (SigningError, PathError, ValidationError) as exc:
        # e.g. the TSA's certificate does not chain to the signer's CA, so no LT data
        raise SealError("seal_invalid", f"无法盖章 (signing failed: {exc})") from exc
    except (PdfError, ValueError, KeyError) as exc:
        raise SealError("pdf_unreadable", f"无法在此 PDF 上盖章 (cannot seal this PDF: {exc})") from exc


def apply_seal(
    pdf_in: bytes,
    *,
    cert: x509.Certificate,
    key: PrivateKey,
    image_png: bytes,
    chain: Sequence[x509.Certificate] = (),
    crls: Sequence[x509.CertificateRevocationList] = (),
    timestamper: TimeStamper | None = None,
    page: int | None = None,
    at: tuple[float, float] | None = None,
    diameter_mm: float = SEAL_DIAMETER_MM,
    person: tuple[x509.Certificate, PrivateKey] | None = None,
    lta: bool = True,
) -> bytes:
    """Seal ``pdf_in`` for the unit of ``cert`` (a SEAL certificate) and return the new PDF.

    ``chain``: the issuing CA certificate(s) (self-signed ones become trust roots for the
    embedded validation data); ``crls``: current CRLs; with both, the validation data is
    embedded (B-LT) and, with a ``timestamper``, a document timestamp added (B-LTA, unless
    ``lta=False``). ``page`` is 1-based; ``at`` the seal centre in mm from the page's
    top-left corner. ``person``: the 签发人's (certificate, key), signing first.

    Refuses (:class:`SealError`/``PkiError``) a certificate that is not a valid seal
    certificate (``wrong_certificate_role``, ``certificate_revoked`` against ``crls``...),
    an unreadable PDF or image, an unreachable TSA.
    """
    address = address_of(cert)
    if role_of(cert) is not CertRole.SEAL or address is None:
        raise SealError("wrong_certificate_role", f"{common_name(cert)} 的证书不是单位印章证书 (not a seal certificate)")
    anchors = [c for c in chain if _is_self_signed(c)]
    now = dt.datetime.now(dt.UTC)
    for crl in _newest_crls(crls):
        # B-LT from the start means current revocation data: a CRL past its nextUpdate
        # would be embedded as proof of a status nobody vouches for any more.
        if crl.issuer == cert.issuer and crl.next_update_utc is not None and crl.next_update_utc < now:
            raise SealError(
                "crl_stale",
                f"证书吊销列表已于 {crl.next_update_utc:%Y-%m-%d %H:%M} UTC 过期，请先更新 "
                "(the CRL is past its next update: refresh it, e.g. from the directory snapshot)",
            )
    if anchors:  # refuse to seal with a certificate we already know to be bad
        store = TrustStore(anchors, intermediates=[c for c in chain if c not in anchors])
        for crl in _newest_crls(crls):
            store.add_crl(crl)
        store.verify(cert, role=CertRole.SEAL)
    if person is not None:
        p_cert, p_key = person
        if role_of(p_cert) is not CertRole.PERSON:
            raise SealError("wrong_certificate_role", f"{common_name(p_cert)} 的证书不是个人证书 (not a personal certificate)")
        if address_of(p_cert) != address:
            raise SealError("seal_address_mismatch", "签发人证书与印章不属于同一单位 (signer is of another unit)")
    style = _stamp_style(image_png)
    reader = _reader(pdf_in)
    n_pages = int(reader.root["/Pages"]["/Count"])

    # Where: explicit position, else the empty seal field, else the default spot.
    filled = {name for name, _v, _r in fields.enumerate_sig_fields(reader, filled_status=True)}
    empty = {name for name, _v, _r in fields.enumerate_sig_fields(reader, filled_status=False)}
    field_spec: fields.SigFieldSpec | None = None
    field_name = SEAL_FIELD
    if page is None and at is None and SEAL_FIELD in empty:
        pass  # sign into the prepared field: its rectangle is the seal's square
    else:
        page_no = n_pages if page is None else page
        if not 1 <= page_no <= n_pages:
            raise SealError("seal_position_invalid", f"页码 {page_no} 超出范围 1..{n_pages} (no such page)")
        width, height = _page_size(reader, page_no - 1)
        center = at or (DEFAULT_CENTER[0] * width / MM, DEFAULT_CENTER[1] * height / MM)
        n = 1
        taken = filled | empty
        while field_name in taken:
            n += 1
            field_name = f"{SEAL_FIELD}-{n}"
        field_spec = fields.SigFieldSpec(
            field_name, on_page=page_no - 1, box=_box(center, diameter_mm, height)
        )

    pdf = pdf_in
    if person is not None:
        p_cert, p_key = person
        name = SIGNER_FIELD
        n = 1
        while name in filled | empty:
            n += 1
            name = f"{SIGNER_FIELD}-{n}"
        pdf = _sign(
            pdf,
            cert=p_cert,
            key=p_key,
            chain=chain,
            crls=crls,
            timestamper=timestamper,
            field_name=name,
            field_spec=fields.SigFieldSpec(name),  # invisible
            style=None,
            location=address,
            reason="签发人签发",
            lta=False,
        )
    return _sign(
        pdf,
        cert=cert,
        key=key,
        chain=chain,
        crls=crls,
        timestamper=timestamper,
        field_name=field_name,
        field_spec=field_spec,
        style=style,
        location=address,
        reason="电子印章",
        lta=lta,
    )


# -- verification -------------------------------------------------------------------------------
@dataclass
class SignatureResult:
    """One signature in the PDF, as the verifier judged it. JSON-able via ``asdict``."""

    field_name: str
    kind: str  # seal | person | document_timestamp | other
    signer: str  # certificate common name
    address: str | None  # unit address from the certificate
    claimed_address: str | None  # /Location written at sealing
    role: str | None
    serial: str  # certificate serial, hex
    issuer: str
    signed_at: str | None  # ISO time of the trusted timestamp, else the signer's claim
    time_source: str  # tsa | signer | none
    intact: bool  # the signed bytes hash to the signed digest
    changed_after: str  # none | signatures_only | form_filling | annotations | other
    coverage: str
    chain: list[str] = field(default_factory=list)
    revocation: str = "unknown"  # good | revoked | revoked_later | unknown
    revoked_at: str | None = None
    pades_level: str | None = None  # B-B | B-T | B-LT | B-LTA (None: not PAdES)
    changed_fields: list[str] = field(default_factory=list)  # form fields filled in after it
    page: int | None = None  # 1-based page of a visible signature's widget
    rect: list[float] | None = None  # its rectangle (PDF points), None when invisible
    revision: int = 0  # the file revision it signs
    ok: bool = False
    error: str | None = None
    message: str = ""


@dataclass
class SealReport:
    ok: bool
    error: str | None
    message: str
    signatures: list[SignatureResult]
    # VALID | INDETERMINATE (e.g. the archive timestamp needs renewal) | INVALID
    status: str = ""
    renew_by: str | None = None  # when the newest timestamp's certificate (chain) expires
    warnings: list[str] = field(default_factory=list)  # changes after sealing worth a look

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise SealError(self.error, self.message)

    @property
    def seals(self) -> list[SignatureResult]:
        return [s for s in self.signatures if s.kind == "seal"]


def _newest_crls(crls: Iterable[x509.CertificateRevocationList]) -> list[x509.CertificateRevocationList]:
    newest: dict[bytes, x509.CertificateRevocationList] = {}
    for crl in crls:
        key = crl.issuer.public_bytes()
        if key not in newest or crl.last_update_utc > newest[key].last_update_utc:
            newest[key] = crl
    return list(newest.values())


def _token_time(signer_info: asn1_cms.SignerInfo) -> dt.datetime | None:
    """genTime of the signature timestamp token (unsigned attribute), unverified."""
    attrs = signer_info["unsigned_attrs"]
    if isinstance(attrs, asn1_core.Void):  # (never .native here: it parses the whole token, slowly)
        return None
    for attr in attrs:
        if attr["type"].native != "signature_time_stamp_token":
            continue
        token = attr["values"][0]
        tst = token["content"]["encap_content_info"]["content"].parsed
        if isinstance(tst, asn1_tsp.TSTInfo):
            when = tst["gen_time"].native
            return when if isinstance(when, dt.datetime) else None
    return None


def _revocation(
    cert: x509.Certificate, chain: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList], when: dt.datetime
) -> tuple[str, str | None]:
    issuer = chain[1] if len(chain) > 1 else None
    if issuer is None:
        return "unknown", None
    for crl in crls:
        if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            return "good", None
        revoked = entry.revocation_date_utc
        return ("revoked" if revoked <= when else "revoked_later"), revoked.isoformat()
    return "unknown", None


_CHANGES = {
    ModificationLevel.NONE: "none",
    ModificationLevel.LTA_UPDATES: "signatures_only",
    ModificationLevel.FORM_FILLING: "form_filling",
    ModificationLevel.ANNOTATIONS: "annotations",
    ModificationLevel.OTHER: "other",
}


def _verify_one(
    emb: Any,
    *,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    dss_certs: Sequence[x509.Certificate],
    has_dss_crl: set[bytes],
    doc_ts_revisions: Sequence[int],
    expected_address: Sequence[str] | None,
    require_crl: bool,
    signature_fields: Sequence[str] = (),
) -> SignatureResult:
    is_doc_ts = emb.sig_object_type == "/DocTimeStamp"
    cert = _crypto_cert(emb.signer_cert)
    embedded = [_crypto_cert(c) for c in emb.other_embedded_certs]
    role = role_of(cert)
    address = address_of(cert)
    sig_dict = emb.sig_object
    claimed = sig_dict.get("/Location")
    claimed_address = str(claimed) if claimed is not None else None
    if is_doc_ts:
        token_time = _token_time_doc(emb)
        kind = "document_timestamp"
    else:
        token_time = _token_time(emb.signer_info)
        kind = {CertRole.SEAL: "seal", CertRole.PERSON: "person"}.get(role, "other") if role else "other"
    moment = token_time or dt.datetime.now(dt.UTC)

    result = SignatureResult(
        field_name=str(emb.field_name),
        kind=kind,
        signer=common_name(cert),
        address=address,
        claimed_address=claimed_address,
        role=role.value if role else None,
        serial=format(cert.serial_number, "x"),
        issuer=cert.issuer.rfc4514_string(),
        signed_at=None,
        time_source="none",
        intact=False,
        changed_after="other",
        coverage="unclear",
    )

    result.revision = int(emb.signed_revision)
    result.page, result.rect = _widget(emb)

    def fail(code: str, detail: str = "") -> SignatureResult:
        result.ok = False
        result.error = code
        result.message = MESSAGES.get(code, code) + (f"：{detail}" if detail else "")
        return result

    vc = _validation_context(anchors, [*embedded, *dss_certs], crls, moment)
    try:
        if is_doc_ts:
            status: Any = validate_pdf_timestamp(emb, vc)
        else:
            status = validate_pdf_signature(emb, vc, vc)
    except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError) as exc:
        return fail("seal_invalid", str(exc))

    result.intact = bool(status.intact)
    diff = getattr(status, "diff_result", None)
    level = getattr(diff, "modification_level", None) if diff is not None else None
    result.changed_after = _CHANGES.get(level, "none" if level is None else "other") if level is not None else (
        "none" if status.coverage == SignatureCoverageLevel.ENTIRE_FILE else "other"
    )
    if level == ModificationLevel.FORM_FILLING:
        # pyHanko files new signatures (fields and their appearance) under form filling
        # too; only a changed field that is not a signature is a filled-in form.
        changed = {str(n) for n in (getattr(diff, "changed_form_fields", None) or ())}
        result.changed_fields = sorted(changed - set(signature_fields))
        if not result.changed_fields:
            result.changed_after = "signatures_only"
    result.coverage = status.coverage.name.lower() if status.coverage is not None else "unclear"
    if is_doc_ts:
        result.signed_at = status.timestamp.isoformat()
        result.time_source = "tsa"
    else:
        tsv = status.timestamp_validity
        if tsv is not None:
            result.signed_at = tsv.timestamp.isoformat()
            result.time_source = "tsa"
        elif status.signer_reported_dt is not None:
            result.signed_at = status.signer_reported_dt.isoformat()
            result.time_source = "signer"

    if not status.intact:
        return fail("seal_modified", "签名范围内的字节被改动 (signed bytes altered)")
    if not status.valid:
        return fail("seal_invalid", "签名值与证书不符 (signature does not verify)")
    if status.coverage not in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION):
        return fail("seal_invalid", "签名未覆盖整个文件修订 (signature does not cover its revision)")
    if (level is not None and level > ModificationLevel.FORM_FILLING) or getattr(status, "docmdp_ok", None) is False:
        return fail("seal_modified", f"盖章后有 {result.changed_after} 类修改 (changes after sealing)")
    if not is_doc_ts:
        tsv = status.timestamp_validity
        if tsv is not None and not (tsv.intact and tsv.valid and tsv.trusted):
            return fail("seal_invalid", "时间戳无效或不受信任 (timestamp invalid or untrusted)")

    # Every remaining problem is collected; the most serious one (ERROR_ORDER) is reported.
    problems: list[tuple[str, str]] = []

    # Chain and revocation at the time of the trusted timestamp (see module docstring).
    store = TrustStore(list(anchors), intermediates=[*embedded, *dss_certs], require_crl=require_crl)
    for crl in crls:
        store.add_crl(crl)
    chain: list[x509.Certificate] = []
    try:
        chain = store.verify(cert, at=moment, extra_certs=embedded)
        result.chain = [common_name(c) or c.subject.rfc4514_string() for c in chain]
        result.revocation, result.revoked_at = _revocation(cert, chain, crls, moment)
    except PkiError as exc:
        if exc.code == "certificate_revoked":
            result.revocation = "revoked"
            _, result.revoked_at = _revocation(cert, [cert, *anchors], crls, moment)
        problems.append((exc.code, exc.message))

    # PAdES level, from what the file holds.
    if not is_doc_ts and str(sig_dict.get("/SubFilter", "")) == "/ETSI.CAdES.detached":
        level_name = "B-B"
        if status.timestamp_validity is not None:
            level_name = "B-T"
            if len(chain) > 1 and chain[1].subject.public_bytes() in has_dss_crl:
                level_name = "B-LT"
                if any(rev > emb.signed_revision for rev in doc_ts_revisions):
                    level_name = "B-LTA"
        result.pades_level = level_name

    # Role and the unit the seal claims / must belong to.
    if is_doc_ts:
        if role is not CertRole.TSA:
            problems.append(("wrong_certificate_role", f"文档时间戳证书 {result.signer} 不是时间戳证书"))
    elif kind == "other":
        problems.append(("wrong_certificate_role", f"{result.signer} ({result.role or '未知角色'})"))
    elif kind == "person":
        if expected_address is not None and address not in expected_address:
            problems.append(("seal_address_mismatch", f"签发人属于 {address}，而非 {'、'.join(expected_address)}"))
    else:
        if claimed_address is not None and claimed_address != address:
            problems.append(("seal_address_mismatch", f"印章声称属于 {claimed_address}，证书属于 {address}"))
        if expected_address is not None and address not in expected_address:
            problems.append(("seal_address_mismatch", f"印章属于 {address}，而非发文单位 {'、'.join(expected_address)}"))
    if problems:
        rank = {code: i for i, code in enumerate(ERROR_ORDER)}
        code, detail = min(problems, key=lambda p: rank.get(p[0], len(rank)))
        return fail(code, detail)

    result.ok = True
    result.message = MESSAGES[None] if kind == "seal" else "有效 (valid)"
    if result.revocation == "revoked_later":
        result.message += f"；证书于 {result.revoked_at} 盖章后被吊销 (revoked after sealing)"
    return result


def _token_time_doc(emb: Any) -> dt.datetime | None:
    """genTime of a document timestamp (its CMS content is the TSTInfo)."""
    tst = emb.signed_data["encap_content_info"]["content"].parsed
    if isinstance(tst, asn1_tsp.TSTInfo):
        when = tst["gen_time"].native
        return when if isinstance(when, dt.datetime) else None
    return None


def _widget(emb: Any) -> tuple[int | None, list[float] | None]:
    """(1-based page, rectangle) of a signature's widget; (None, None) when invisible."""
    try:
        field_obj = emb.sig_field
        rect = [float(v) for v in field_obj.get("/Rect", [])]
        if len(rect) != 4 or rect[2] - rect[0] < 1 or rect[3] - rect[1] < 1:
            return None, None
        reader = emb.reader
        page_ref = field_obj.raw_get("/P") if "/P" in field_obj else None
        for ix in range(int(reader.root["/Pages"]["/Count"])):
            page_obj, _ = reader.find_page_for_modification(ix)
            if page_ref is not None and page_obj == page_ref:
                return ix + 1, rect
            annots = page_obj.get_object().get("/Annots")
            if isinstance(annots, ArrayObject) and any(a.get_object() is field_obj for a in annots):
                return ix + 1, rect
        return None, rect
    except (KeyError, ValueError, TypeError, AttributeError, PdfError):
        return None, None


def _words_under(pdf: bytes, page: int, rect: Sequence[float]) -> list[str]:
    """Words of ``page`` (as the PDF ``pdf`` shows it) under ``rect`` (PDF points), read by
    poppler's pdftotext; [] when poppler is not installed (docker image and
    scripts/setup-machine.sh install it) or the page cannot be read."""
    import re
    import shutil
    import subprocess
    import tempfile

    if len(rect) != 4 or shutil.which("pdftotext") is None:
        return []
    with tempfile.NamedTemporaryFile(suffix=".pdf") as tmp:
        tmp.write(pdf)
        tmp.flush()
        done = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), tmp.name, "-"],
                              capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return []
    height = re.search(r'<page width="[\d.]+" height="([\d.]+)"', done.stdout)
    if height is None:
        return []
    page_h = float(height.group(1))
    words = []
    for m in re.finditer(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', done.stdout):
        x0, y0, x1, y1 = (float(v) for v in m.groups()[:4])
        if _overlap(rect, (x0, page_h - y1, x1, page_h - y0)):
            words.append(m.group(5))
    return words


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    ax0, ax1 = sorted((a[0], a[2]))
    ay0, ay1 = sorted((a[1], a[3]))
    bx0, bx1 = sorted((b[0], b[2]))
    by0, by1 = sorted((b[1], b[3]))
    return ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1


def _token_certificate(token: asn1_cms.ContentInfo) -> x509.Certificate | None:
    """The signer's certificate inside a time-stamp token (the TSA's)."""
    signed = token["content"]
    sid = signed["signer_infos"][0]["sid"]
    for choice in signed["certificates"] or []:
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if cert.serial_number == wanted["serial_number"].native and cert.issuer == wanted["issuer"]:
                return _crypto_cert(cert)
        elif cert.key_identifier == sid.chosen.native:
            return _crypto_cert(cert)
    return None


def _newest_timestamp(sigs: Sequence[Any]) -> tuple[dt.datetime, x509.Certificate] | None:
    """(genTime, TSA certificate) of the newest proof of existence in the file: the newest
    document (archive) timestamp, else the newest signature timestamp."""
    found: list[tuple[int, dt.datetime, x509.Certificate]] = []
    for emb in sigs:
        try:
            if emb.sig_object_type == "/DocTimeStamp":
                when = _token_time_doc(emb)
                if when is not None:
                    found.append((2, when, _crypto_cert(emb.signer_cert)))
                continue
            attrs = emb.signer_info["unsigned_attrs"]
            if isinstance(attrs, asn1_core.Void):
                continue
            for attr in attrs:
                if attr["type"].native == "signature_time_stamp_token":
                    token = attr["values"][0]
                    when = _token_time(emb.signer_info)
                    cert = _token_certificate(token)
                    if when is not None and cert is not None:
                        found.append((1, when, cert))
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
    if not found:
        return None
    _, when, cert = max(found, key=lambda f: (f[0], f[1]))
    return when, cert


def verify_seals(
    pdf: bytes,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] = (),
    expected_address: str | Sequence[str] | None = None,
    *,
    require_crl: bool = True,
    long_term: bool = False,
    now: dt.datetime | None = None,
    renewal_margin: dt.timedelta = RENEWAL_MARGIN,
) -> SealReport:
    """Verify every signature of ``pdf`` offline and give a verdict.

    ``anchors``: trusted CA certificates (the county CA, the city CA...); ``crls``: the
    newest CRLs the verifier has (embedded ones are used too; the newest per issuer
    wins); ``expected_address``: the unit the document must be sealed by (the envelope's
    sender), or several for a joint issue (联合行文: every one must have sealed it, no
    seal of anyone else). ``require_crl``: no revocation information at all is
    ``crl_missing``.

    ``long_term``: also judge the proofs of existence at ``now`` (default: the current
    time), as ETSI EN 319 102-1 does: the newest archive (document) timestamp, else the
    newest signature timestamp, must itself still be verifiable - its TSA certificate and
    CA valid beyond ``now + renewal_margin``. If not, the report is INDETERMINATE with
    ``seal_renewal_needed`` (``docex seal renew`` adds a fresh timestamp), not VALID.

    Changes after sealing that pyHanko allows (form filling, annotations) and a later
    signature whose visible widget covers an earlier seal are listed in ``warnings``.
    The report's ``error`` is None only if there is at least one seal and every
    signature is valid. Never raises on bad input: an unreadable PDF is ``seal_invalid``.
    """
    expected: list[str] | None = (
        None if expected_address is None
        else [expected_address] if isinstance(expected_address, str) else list(expected_address)
    )
    try:
        reader = _reader(pdf)
        sigs = list(reader.embedded_signatures)
    except SealError as exc:
        return SealReport(False, "seal_invalid", exc.message, [], status="INVALID")
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        return SealReport(False, "seal_invalid", f"不是可读的 PDF 文件 ({exc})", [], status="INVALID")

    dss_certs: list[x509.Certificate] = []
    dss_crls: list[x509.CertificateRevocationList] = []
    try:
        dss = reader.root.get("/DSS")
        if dss is not None:  # else a B-B/B-T document
            dss = dss.get_object()
            dss_certs = [x509.load_der_x509_certificate(r.get_object().data) for r in dss.get("/Certs", [])]
            dss_crls = [x509.load_der_x509_crl(r.get_object().data) for r in dss.get("/CRLs", [])]
    except (KeyError, ValueError, PdfError, TypeError, AttributeError):
        dss_certs, dss_crls = [], []  # unreadable DSS: verify with what the caller gave
    has_dss_crl = {c.issuer.public_bytes() for c in dss_crls}
    all_crls = _newest_crls([*crls, *dss_crls])
    doc_ts_revisions = [e.signed_revision for e in sigs if e.sig_object_type == "/DocTimeStamp"]

    results = [
        _verify_one(
            emb,
            anchors=anchors,
            crls=all_crls,
            dss_certs=dss_certs,
            has_dss_crl=has_dss_crl,
            doc_ts_revisions=doc_ts_revisions,
            expected_address=expected,
            require_crl=require_crl,
            signature_fields=[str(e.field_name) for e in sigs],
        )
        for emb in sigs
    ]
    errors = {r.error for r in results if r.error}
    seals = [r for r in results if r.kind == "seal"]
    missing_units: list[str] = []
    if not seals:
        errors.add("seal_missing")
    elif expected is not None and len(expected) > 1:
        missing_units = [a for a in expected if not any(r.address == a and r.ok for r in seals)]
        if missing_units:
            errors.add("seal_missing")

    warnings: list[str] = []
    for r in results:
        if r.kind != "document_timestamp" and r.changed_after in REPORTED_CHANGES:
            what = (
                f"表单填写 form filled ({'、'.join(r.changed_fields) or '?'})" if r.changed_after == "form_filling"
                else "添加批注 annotations added"
            )
            warnings.append(f"{r.signer} [{r.field_name}] 盖章后有修改：{what} (changed after sealing)")
    visible = [r for r in results if r.rect is not None and r.page is not None]
    for later in visible:
        for earlier in visible:
            if earlier.revision < later.revision and earlier.page == later.page and earlier.rect and later.rect \
                    and _overlap(earlier.rect, later.rect):
                warnings.append(
                    f"后加的签名 {later.signer} [{later.field_name}] 的外观盖住了 {earlier.signer} [{earlier.field_name}] "
                    f"的印章 (a later signature's appearance covers an earlier seal)"
                )
    first_seal = min((e for e in sigs if e.sig_object_type != "/DocTimeStamp"), key=lambda e: e.signed_revision, default=None)
    if first_seal is not None:
        later_widgets = [r for r in visible if r.revision > first_seal.signed_revision]
        if later_widgets:
            byte_range = [int(v) for v in first_seal.byte_range]
            sealed_bytes = pdf[: byte_range[2] + byte_range[3]]
            for r in later_widgets:
                words = _words_under(sealed_bytes, r.page or 1, r.rect or [])
                if words:
                    warnings.append(
                        f"后加的签名 {r.signer} [{r.field_name}] 的外观盖住了盖章时的正文“{''.join(words)[:20]}” "
                        f"(a later signature's appearance covers page text that was sealed)"
                    )

    error = next((code for code in ERROR_ORDER if code in errors), None)
    if error is None and errors:
        error = sorted(e for e in errors if e)[0]
    message = MESSAGES.get(error, error or "")
    if error == "seal_missing" and missing_units:
        message += "：" + "、".join(missing_units) + " 未盖章 (no valid seal of these units)"
    status = "VALID" if error is None else "INVALID"
    renew_by: str | None = None
    if long_term and sigs:
        moment = now or dt.datetime.now(dt.UTC)
        newest = _newest_timestamp(sigs)
        if newest is not None:
            _, tsa_cert = newest
            chain = [tsa_cert, *(a for a in anchors if a.subject == tsa_cert.issuer)]
            expires = min(c.not_valid_after_utc for c in chain)
            renew_by = expires.isoformat()
            if moment + renewal_margin >= expires and error is None:
                status, error = "INDETERMINATE", "seal_renewal_needed"
                state = "已于" if moment >= expires else "将于"
                message = (
                    f"{MESSAGES[error]}：最新时间戳的证书{state} {expires:%Y-%m-%d} 过期 "
                    f"(the newest timestamp's certificate {'expired' if moment >= expires else 'expires'} on {expires:%Y-%m-%d})"
                )
    return SealReport(
        ok=error is None, error=error, message=message, signatures=results,
        status=status, renew_by=renew_by, warnings=warnings,
    )


def renew_seal(
    pdf: bytes,
    *,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    timestamper: TimeStamper,
    others: Sequence[x509.Certificate] = (),
) -> bytes:
    """PAdES LTA renewal: validation data for the newest timestamp (certificates and the
    current CRLs) into the DSS, then a fresh document timestamp over everything
    (pyHanko's ``PdfTimeStamper.update_archival_timestamp_chain``). Do it before the newest
    timestamp's certificate expires (see :data:`RENEWAL_MARGIN`)."""
    reader = _reader(pdf)
    if not list(reader.embedded_signatures):
        raise SealError("seal_missing", MESSAGES["seal_missing"])
    if not crls:
        raise SealError("crl_missing", "续期需要当前的证书吊销列表 (renewal needs the current CRLs)")
    vc = _validation_context(anchors, others, crls)
    try:
        out = signers.PdfTimeStamper(timestamper).update_archival_timestamp_chain(
            reader, vc, in_place=False, output=io.BytesIO()
        )
        return bytes(out.getvalue())
    except TimestampRequestError as exc:
        raise SealError("timestamp_unavailable", f"时间戳服务不可用 (TSA refused or unreachable: {exc})") from exc
    except (SigningError, PathError, ValidationError, SignatureValidationError) as exc:
        raise SealError("seal_invalid", f"无法续期：最新时间戳已无法验证 (cannot renew: {exc})") from exc
    except (PdfError, ValueError, KeyError) as exc:
        raise SealError("pdf_unreadable", f"无法在此 PDF 上续期 ({exc})") from exc
