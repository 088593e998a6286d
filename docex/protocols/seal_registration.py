"""A seal impression (印模) registered by the information centre for one unit, signed by
the hub and sent to that unit's agent, which then uses it to seal outgoing PDFs."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography import x509

from docex.pki.keys import PrivateKey
from docex.pki.names import CertRole, hub_prefix_of
from docex.pki.trust import TrustStore
from docex.protocols.errors import DocexError
from docex.protocols.manifest import utcnow_iso
from docex.protocols.statement import sign_statement, verify_statement

KIND = "seal"


@dataclass(frozen=True)
class SealRegistration:
    address: str
    image_png: bytes
    sha256: str
    registered_at: str
    hub: str


def make_registration(address: str, image_png: bytes, hub: str, cert: x509.Certificate, key: PrivateKey) -> tuple[SealRegistration, bytes]:
    reg = SealRegistration(address, image_png, hashlib.sha256(image_png).hexdigest(), utcnow_iso(), hub)
    payload = {"address": address, "image_png": base64.b64encode(image_png).decode(), "sha256": reg.sha256,
               "registered_at": reg.registered_at, "hub": hub}
    return reg, sign_statement(KIND, payload, cert, key)


def verify_registration(der: bytes, trust: TrustStore, *, hub: str) -> SealRegistration:
    statement = verify_statement(der, trust, kind=KIND, roles=(CertRole.SERVER,), error_code="seal_invalid")
    p = statement.payload
    if hub_prefix_of(statement.signer) != hub or p.get("hub") != hub:
        raise DocexError("seal_invalid", "a seal registration must come from this unit's own hub")
    try:
        image = base64.b64decode(str(p["image_png"]))
        reg = SealRegistration(str(p["address"]), image, str(p["sha256"]), str(p["registered_at"]), hub)
    except (KeyError, ValueError) as exc:
        raise DocexError("seal_invalid", "the seal registration is not well formed") from exc
    if hashlib.sha256(image).hexdigest() != reg.sha256:
        raise DocexError("seal_invalid", "the seal image does not match its digest")
    return reg
