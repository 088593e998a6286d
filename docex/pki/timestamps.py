"""RFC 3161 time-stamp tokens as proofs of existence, outside PDFs.

- a *stamper* turns a SHA-256 digest into a token (DER ContentInfo): in-process from the
  hub's own :class:`~docex.pki.tsa.TimeStampAuthority`, or over HTTP from ``docex tsa run``
  / the hub's ``/tsa``;
- :func:`add_signature_timestamp` puts a token over a CMS signature value into the
  signer's unsigned attribute signatureTimeStampToken (RFC 3161 appendix A, as CAdES-T
  does): the signed bytes do not change, so the signature still verifies as before;
- :func:`verify_token` checks a token offline: its imprint, its signature, the TSA
  certificate's chain and revocation *at the token's own time*;
- :func:`evaluate_archive` judges a chain of archive timestamps (each over what the earlier
  ones covered, plus those tokens) at a given date, ETSI EN 319 102-1 style: the newest
  must still be valid then, each older one must have been valid when the next was made;
  otherwise the evidence needs renewal (INDETERMINATE, never VALID).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from asn1crypto import core, tsp
from cryptography import x509

from docex.pki import cms
from docex.pki.errors import PkiError
from docex.pki.names import CertRole
from docex.pki.trust import TrustStore

Stamper = Callable[[bytes], bytes]
"""SHA-256 digest -> DER time-stamp token (a CMS ContentInfo of SignedData/TSTInfo)."""

SIGNATURE_TIMESTAMP = "signature_time_stamp_token"  # id-aa-signatureTimeStampToken, 1.2.840.113549.1.9.16.2.14
RENEW_MARGIN = dt.timedelta(days=180)  # an archive timestamp this close to expiry asks for renewal


def local_stamper(tsa: object) -> Stamper:
    """A stamper over an in-process TimeStampAuthority (the hub's own, in HUBDIR/tsa)."""
    from docex.pki.tsa import Rejection, TimeStampAuthority

    assert isinstance(tsa, TimeStampAuthority)

    def stamp(digest: bytes) -> bytes:
        req = tsp.TimeStampReq({
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
            "nonce": int.from_bytes(hashlib.sha256(digest + dt.datetime.now(dt.UTC).isoformat().encode()).digest()[:8], "big"),
            "cert_req": True,
        })
        try:
            resp = tsa.timestamp(req)
        except Rejection as exc:
            raise PkiError("timestamp_failed", f"the TSA refused: {exc}") from exc
        return bytes(resp["time_stamp_token"].dump())

    return stamp


def http_stamper(url: str, *, timeout: float = 10.0) -> Stamper:
    """A stamper asking an RFC 3161 TSA over HTTP (pyHanko's client)."""
    from docex.pki.tsa import http_timestamper

    timestamper = http_timestamper(url, timeout=timeout)

    def stamp(digest: bytes) -> bytes:
        try:
            token = asyncio.run(timestamper.async_timestamp(digest, "sha256"))
        except Exception as exc:  # noqa: BLE001 - network, refusal, garbage: one named error
            raise PkiError("timestamp_failed", f"no timestamp from {url}: {exc}") from exc
        return bytes(token.dump())

    return stamp


# -- signature timestamps -----------------------------------------------------------------------
def _signer_info(info: asn1_cms.ContentInfo) -> asn1_cms.SignerInfo:
    try:
        infos = info["content"]["signer_infos"]
        if len(infos) != 1:
            raise PkiError("malformed_envelope", "exactly one signer is expected")
        return infos[0]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise PkiError("malformed_envelope", "not a well-formed CMS SignedData") from exc


def _load(der: bytes) -> asn1_cms.ContentInfo:
    try:
        info = cms._ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise PkiError("malformed_envelope", "not a CMS SignedData")
        return info
    except PkiError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise PkiError("malformed_envelope", "not a well-formed CMS SignedData") from exc


def signature_value(der: bytes) -> bytes:
    """The signer's signature value: what a signature timestamp covers."""
    return bytes(_signer_info(_load(der))["signature"].native)


def signature_timestamp(der: bytes) -> bytes | None:
    """The signatureTimeStampToken of a SignedData's signer, as DER, or None."""
    unsigned = _signer_info(_load(der))["unsigned_attrs"]
    if not unsigned or not len(unsigned):
        return None
    for attr in unsigned:
        if attr["type"].native == SIGNATURE_TIMESTAMP:
            return bytes(attr["values"][0].dump())
    return None


def add_signature_timestamp(der: bytes, stamper: Stamper) -> bytes:
    """The same SignedData with a timestamp over its signature value (unchanged if it has
    one already). The signed attributes and the content stay byte for byte the same."""
    if signature_timestamp(der) is not None:
        return der
    info = _load(der)
    signer_info = _signer_info(info)
    token = stamper(hashlib.sha256(bytes(signer_info["signature"].native)).digest())
    attr = asn1_cms.CMSAttribute({"type": SIGNATURE_TIMESTAMP, "values": [asn1_cms.ContentInfo.load(token)]})
    # Only the SignerInfo is encoded anew; every other part of the SignedData keeps its
    # received encoding, spliced in as it is. Dumping the whole modified structure made
    # asn1crypto re-encode parts of some SignedData field by field, for seconds to minutes
    # (a returned receipt held the hub's intake for over three minutes).
    fresh = asn1_cms.SignerInfo.load(signer_info.dump())
    current = fresh["unsigned_attrs"]
    existing = list(current) if current and len(current) else []
    fresh["unsigned_attrs"] = asn1_cms.CMSAttributes([*existing, attr])
    signed_data = info["content"]
    parts = [signed_data[name].dump() for name, *_ in signed_data._fields
             if name != "signer_infos" and not isinstance(signed_data[name], core.Void)]
    body = b"".join(parts) + _tlv(0x31, fresh.dump())  # signerInfos: a SET OF, the last field
    return _tlv(0x30, info["content_type"].dump() + _tlv(0xA0, _tlv(0x30, body)))


def _tlv(tag: int, body: bytes) -> bytes:
    """One DER element: tag, definite length, contents."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


# -- verification -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenInfo:
    gen_time: dt.datetime
    serial: int
    tsa: x509.Certificate
    chain: list[x509.Certificate]
    imprint: bytes


def token_time(token: bytes) -> dt.datetime:
    """The genTime a token claims (unverified)."""
    return _tst_info(token)["gen_time"].native  # type: ignore[no-any-return]


def _tst_info(token: bytes) -> tsp.TSTInfo:
    try:
        info = cms._ContentInfo.load(token, strict=True)
        encap = info["content"]["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise PkiError("timestamp_invalid", "the token does not hold a TSTInfo")
        tst = tsp.TSTInfo.load(cms._encap_bytes(encap["content"]))
        tst.native  # noqa: B018 - parse it all now
        return tst
    except PkiError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise PkiError("timestamp_invalid", "the time-stamp token is damaged") from exc


def verify_token(token: bytes, trust: TrustStore, *, data: bytes | None = None, digest: bytes | None = None,
                 at: dt.datetime | None = None) -> TokenInfo:
    """Verify a token over `data` (or its SHA-256 `digest`): the imprint, the TSA's
    signature, and the TSA certificate's chain and revocation at `at` (default: the
    token's own time). Raises PkiError(timestamp_invalid / certificate_*)."""
    if digest is None:
        if data is None:
            raise ValueError("verify_token needs data or digest")
        digest = hashlib.sha256(data).digest()
    tst = _tst_info(token)
    imprint = tst["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].native != "sha256":
        raise PkiError("timestamp_invalid", "the token's imprint is not SHA-256")
    if bytes(imprint["hashed_message"].native) != digest:
        raise PkiError("timestamp_invalid", "the timestamp covers other data")
    gen_time: dt.datetime = tst["gen_time"].native
    try:
        verified = cms.verify(token, trust, role=CertRole.TSA, at=at or gen_time)
    except PkiError as exc:
        if exc.code in ("signature_invalid", "malformed_envelope"):
            raise PkiError("timestamp_invalid", f"the time-stamp token does not verify: {exc.message}") from exc
        raise
    if verified.content_type != "tst_info":
        raise PkiError("timestamp_invalid", "the token does not hold a TSTInfo")
    # Nothing in the token goes unchecked: every certificate it carries is on the chain.
    from cryptography.hazmat.primitives.serialization import Encoding

    on_chain = {c.public_bytes(Encoding.DER) for c in verified.chain}
    carried = cms._ContentInfo.load(token)["content"]["certificates"]
    if any(c.chosen.dump() not in on_chain for c in carried or []):
        raise PkiError("timestamp_invalid", "the token carries a certificate that is not on its chain")
    return TokenInfo(gen_time, int(tst["serial_number"].native), verified.signer, verified.chain, digest)


def verify_signature_timestamp(signed: bytes, trust: TrustStore, *, at: dt.datetime | None = None) -> TokenInfo:
    token = signature_timestamp(signed)
    if token is None:
        raise PkiError("timestamp_missing", "the signature carries no timestamp")
    return verify_token(token, trust, digest=hashlib.sha256(signature_value(signed)).digest(), at=at)


# -- archive timestamps -------------------------------------------------------------------------
def archive_input(base: bytes, earlier_tokens: Sequence[bytes]) -> bytes:
    """What archive timestamp n covers: the protected data and every earlier archive token."""
    return base + b"".join(earlier_tokens)


@dataclass(frozen=True)
class ArchiveStatus:
    """VALID: the newest archive timestamp is valid at `at` (and not near expiry);
    RENEWAL_DUE: still valid but within the renewal margin; INDETERMINATE: it no longer
    proves anything at `at` (certificate expired), so the evidence needs renewal first;
    INVALID: a token does not match what it covers or does not verify."""

    status: str  # VALID | RENEWAL_DUE | INDETERMINATE | INVALID
    tokens: list[TokenInfo]
    message: str
    expires: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("VALID", "RENEWAL_DUE")


def evaluate_archive(base: bytes, tokens: Sequence[bytes], trust: TrustStore, *, at: dt.datetime | None = None,
                     margin: dt.timedelta = RENEW_MARGIN) -> ArchiveStatus:
    """Judge the archive timestamps over `base` at `at` (default now)."""
    when = at or dt.datetime.now(dt.UTC)
    if not tokens:
        return ArchiveStatus("INDETERMINATE", [], "no archive timestamp: renew to add one")
    infos: list[TokenInfo] = []
    for index, token in enumerate(tokens):
        covered = archive_input(base, tokens[:index])
        # each token must have been valid when the next one was made (the newest: at `when`)
        try:
            next_time = token_time(tokens[index + 1]) if index + 1 < len(tokens) else when
            infos.append(verify_token(token, trust, data=covered, at=next_time))
        except PkiError as exc:
            if exc.code in ("certificate_expired",) and index + 1 == len(tokens):
                return ArchiveStatus("INDETERMINATE", infos, f"the newest archive timestamp no longer proves "
                                     f"existence on {when:%Y-%m-%d}: renew the evidence ({exc.message})")
            return ArchiveStatus("INVALID", infos, f"archive timestamp {index + 1}: [{exc.code}] {exc.message}")
    expires = min(c.not_valid_after_utc for c in infos[-1].chain)
    if expires - when < margin:
        return ArchiveStatus("RENEWAL_DUE", infos, f"the newest archive timestamp expires on {expires:%Y-%m-%d}: "
                             "renew soon", expires)
    return ArchiveStatus("VALID", infos, f"protected until {expires:%Y-%m-%d}", expires)
