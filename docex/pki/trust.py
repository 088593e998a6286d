"""Offline certificate verification: several trust anchors at once (the county CA, the
city CA...), each with its current CRL. No OCSP and no network: the intranet has none."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from docex.pki.errors import PkiError, UnknownIssuer
from docex.pki.keys import load_certificates, load_crl
from docex.pki.names import CertRole, common_name, role_of

MAX_CHAIN = 4


def _fingerprint(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256())


@dataclass
class TrustStore:
    """Trust anchors, known intermediates and CRLs. `verify` raises PkiError with a code."""

    anchors: list[x509.Certificate]
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    require_crl: bool = False
    # Issuers (SHA-256 fingerprints) whose revocation must be known: our own CA. For them a
    # missing CRL, or one past its nextUpdate by more than `crl_grace`, fails closed.
    strict: frozenset[bytes] = frozenset()
    crl_grace: dt.timedelta = dt.timedelta(hours=72)

    @classmethod
    def from_files(
        cls,
        anchors: Iterable[str | os.PathLike[str]],
        crls: Iterable[str | os.PathLike[str]] = (),
        *,
        require_crl: bool = False,
    ) -> TrustStore:
        certs = [c for path in anchors for c in load_certificates(path)]
        return cls(certs, [load_crl(p) for p in crls if Path(p).exists()], require_crl=require_crl)

    def add_crl(self, crl: x509.CertificateRevocationList) -> None:
        """Keep the newest CRL per issuer: an older one never replaces a newer one."""
        current = [c for c in self.crls if c.issuer == crl.issuer]
        if any(c.last_update_utc > crl.last_update_utc for c in current):
            return
        self.crls = [c for c in self.crls if c.issuer != crl.issuer] + [crl]

    def _issuer_of(self, cert: x509.Certificate, extra: Iterable[x509.Certificate]) -> x509.Certificate | None:
        for candidate in [*self.anchors, *self.intermediates, *extra]:
            if candidate.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            return candidate
        return None

    def _crl_for(self, issuer: x509.Certificate) -> x509.CertificateRevocationList | None:
        for crl in self.crls:
            if crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                return crl
        return None

    def make_strict(self, *issuers: x509.Certificate, grace: dt.timedelta | None = None) -> TrustStore:
        """Fail closed on stale or missing CRLs of `issuers` (our own CA)."""
        self.strict = frozenset(_fingerprint(c) for c in issuers)
        if grace is not None:
            self.crl_grace = grace
        return self

    def is_anchor(self, cert: x509.Certificate) -> bool:
        fp = _fingerprint(cert)
        return any(_fingerprint(a) == fp for a in self.anchors)

    def verify(
        self,
        cert: x509.Certificate,
        *,
        at: dt.datetime | None = None,
        role: CertRole | None = None,
        extra_certs: Iterable[x509.Certificate] = (),
    ) -> list[x509.Certificate]:
        """Verify `cert` up to a trust anchor at time `at` (default now). Returns the chain
        (cert first, anchor last)."""
        when = at or dt.datetime.now(dt.UTC)
        who = common_name(cert) or cert.subject.rfc4514_string()
        if role is not None and role_of(cert) != role:
            raise PkiError(
                "wrong_certificate_role",
                f"the certificate of {who} is not a {role.value} certificate",
            )
        extra = list(extra_certs)
        chain = [cert]
        current = cert
        while not self.is_anchor(current):
            if len(chain) > MAX_CHAIN:
                raise PkiError("certificate_untrusted", f"the chain of {who} is too long")
            issuer = self._issuer_of(current, extra)
            if issuer is None:
                raise UnknownIssuer(f"the certificate of {who} was not issued by a trusted CA")
            chain.append(issuer)
            current = issuer
        for index, link in enumerate(chain):
            if not (link.not_valid_before_utc <= when <= link.not_valid_after_utc):
                name = common_name(link)
                raise PkiError(
                    "certificate_expired",
                    f"the certificate of {name} is not valid on {when:%Y-%m-%d}",
                )
            if index + 1 < len(chain):
                self._check_revocation(link, chain[index + 1], when)
        return chain

    def _check_revocation(self, cert: x509.Certificate, issuer: x509.Certificate, when: dt.datetime) -> None:
        crl = self._crl_for(issuer)
        if self.strict and _fingerprint(issuer) in self.strict:
            now = dt.datetime.now(dt.UTC)
            if crl is None:
                raise PkiError("crl_stale", f"no CRL of {common_name(issuer)}: revocations cannot be checked")
            if crl.next_update_utc is None or crl.next_update_utc + self.crl_grace < now:
                raise PkiError("crl_stale", f"the CRL of {common_name(issuer)} expired "
                                            f"(next update was {crl.next_update_utc:%Y-%m-%d %H:%M} UTC)")
        if crl is None:
            if self.require_crl:
                raise PkiError(
                    "crl_missing",
                    f"no current CRL of {common_name(issuer)} to check {common_name(cert)} against",
                )
            return
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and entry.revocation_date_utc <= when:
            raise PkiError(
                "certificate_revoked",
                f"the certificate of {common_name(cert)} was revoked on "
                f"{entry.revocation_date_utc:%Y-%m-%d}",
            )
