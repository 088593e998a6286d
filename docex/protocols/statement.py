"""Signed statements: a small JSON document in a CMS SignedData, typed by a signed
attribute. Receipts, hub notices and directory snapshots are all statements, so one
verifier serves them all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from docex.pki import cms
from docex.pki.keys import PrivateKey
from docex.pki.names import CertRole, role_of
from docex.pki.trust import TrustStore
from docex.protocols.errors import DocexError


@dataclass(frozen=True)
class SignedStatement:
    kind: str
    payload: dict[str, Any]
    signer: x509.Certificate


def sign_statement(
    kind: str,
    payload: dict[str, Any],
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    extra_certs: tuple[x509.Certificate, ...] = (),
) -> bytes:
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return cms.sign(body, cert, key, attributes={"docex_statement_type": kind.encode()}, extra_certs=extra_certs)


def verify_statement(
    der: bytes,
    trust: TrustStore,
    *,
    kind: str,
    roles: tuple[CertRole, ...],
    error_code: str,
) -> SignedStatement:
    verified = cms.verify(der, trust)
    if role_of(verified.signer) not in roles:
        raise DocexError("wrong_certificate_role", f"a {kind} must be signed by a {'/'.join(r.value for r in roles)} certificate")
    signed_kind = verified.attributes.get("docex_statement_type", b"").decode(errors="replace")
    if signed_kind != kind:
        raise DocexError(error_code, f"expected a signed {kind}, got {signed_kind or 'something else'}")
    try:
        payload = json.loads(verified.content.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise DocexError(error_code, f"the {kind} is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise DocexError(error_code, f"the {kind} is not a JSON object")
    return SignedStatement(kind, payload, verified.signer)


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259), though Python reads them: refused, so that no
    number a peer signs can be infinite (an `int()` of it raised OverflowError)."""
    raise ValueError(f"{name} is not a JSON number")
