"""Whom an envelope is encrypted to, judged without decrypting: every RecipientInfo names
a certificate by issuer and serial number, which a hub can hold against its CRLs and the
encryption certificates it knows. A document encrypted to a revoked or expired
certificate is refused before it travels (the key may be in the wrong hands)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from cryptography import x509

from docex.pki import cms
from docex.pki.errors import PkiError
from docex.pki.names import common_name
from docex.pki.trust import TrustStore


def _trusted_crls(trust: TrustStore) -> list[x509.CertificateRevocationList]:
    """The CRLs signed by one of the anchors (a CRL is evidence only with its signature)."""
    return [crl for crl in trust.crls
            if any(a.subject == crl.issuer and crl.is_signature_valid(a.public_key())  # type: ignore[arg-type]
                   for a in trust.anchors)]


def usable_for_encryption(cert: x509.Certificate, trust: TrustStore, at: dt.datetime | None = None) -> str | None:
    """None when `cert` may be encrypted to; else the code why not (revoked / expired)."""
    when = at or dt.datetime.now(dt.UTC)
    if not (cert.not_valid_before_utc <= when <= cert.not_valid_after_utc):
        return "certificate_expired"
    for crl in _trusted_crls(trust):
        if crl.issuer == cert.issuer:
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None and entry.revocation_date_utc <= when:
                return "certificate_revoked"
    return None


def check_recipients(encrypted: bytes, trust: TrustStore, known: Iterable[x509.Certificate] = (),
                     at: dt.datetime | None = None) -> None:
    """Refuse (certificate_revoked / certificate_expired) an AuthEnvelopedData any of whose
    recipients is a certificate on a CRL `trust` holds, or one of `known` (the encryption
    certificates on record) that is not valid now."""
    when = at or dt.datetime.now(dt.UTC)
    certs = list(known)
    crls = _trusted_crls(trust)
    for issuer, serial in cms.recipient_ids(encrypted):
        for crl in crls:
            entry = crl.get_revoked_certificate_by_serial_number(serial)
            if entry is not None and entry.revocation_date_utc <= when and cms.same_issuer(issuer, crl.issuer):
                raise PkiError("certificate_revoked",
                               f"encrypted to certificate {serial:x}, revoked on {entry.revocation_date_utc:%Y-%m-%d}")
        for cert in certs:
            if cert.serial_number == serial and cms.same_issuer(issuer, cert.issuer):
                code = usable_for_encryption(cert, trust, when)
                if code is not None:
                    raise PkiError(code, f"encrypted to the {code.removeprefix('certificate_')} certificate "
                                         f"of {common_name(cert)}")
