"""The agent's electronic seal: sealing outgoing PDFs with the unit's seal certificate and
registered impression, verifying the seals of received ones, and accepting the
information centre's seal registrations."""

from __future__ import annotations

import logging

from cryptography import x509

from docex.agent.context import AgentContext
from docex.pki.keys import PrivateKey, load_certificates
from docex.protocols.errors import DocexError
from docex.protocols.seal_registration import verify_registration

log = logging.getLogger(__name__)
SEAL_IMAGE = "seal.png"


def seal_image(ctx: AgentContext) -> bytes:
    """The registered impression; a drawn standard round seal until one is registered."""
    path = ctx.config.home / SEAL_IMAGE
    if path.exists():
        return path.read_bytes()
    from docex.pki.seal_image import draw_seal

    return draw_seal(ctx.config.name)


def seal_pdf(ctx: AgentContext, pdf: bytes, *, person: tuple[x509.Certificate, PrivateKey] | None = None) -> bytes:
    from docex.pki.seal import apply_seal

    timestamper = None
    if ctx.config.seal.tsa_url:
        from docex.pki.tsa import http_timestamper

        timestamper = http_timestamper(ctx.config.seal.tsa_url, ca_file=str(ctx.config.home / "ca.crt"))
    chain = load_certificates(ctx.config.home / "ca.crt")
    return apply_seal(
        pdf, cert=ctx.creds.sign_cert, key=ctx.creds.sign_key, image_png=seal_image(ctx), chain=chain,
        crls=list(ctx.trust.crls), timestamper=timestamper, person=person, lta=timestamper is not None,
    )


def sealed_by_this_unit(ctx: AgentContext, pdf: bytes) -> bool:
    """True when every signature of ``pdf`` verifies and its seals are this unit's: a
    document the desk laid out and sealed already (`POST /api/compose` with `seal`)."""
    if b"/ByteRange" not in pdf:  # no signature dictionary at all (pyHanko writes them uncompressed)
        return False
    from docex.pki.seal import verify_seals

    report = verify_seals(pdf, ctx.trust.anchors, list(ctx.trust.crls), ctx.creds.address, require_crl=False)
    return report.error is None and bool(report.signatures)


def verify_pdf_seals(ctx: AgentContext, pdf: bytes, *, expected_address: str) -> str:
    """'valid' when every signature verifies and the seal is the sender's; 'none' for a PDF
    without any signature; a named DocexError otherwise (the document is quarantined)."""
    from docex.pki.seal import verify_seals

    report = verify_seals(pdf, ctx.trust.anchors, list(ctx.trust.crls), expected_address, require_crl=False)
    if not report.signatures:
        return "none"
    if report.error is not None:
        raise DocexError(report.error if report.error.startswith(("seal", "certificate")) else "seal_invalid",
                         report.message)
    return "valid"


def accept_seal_registration(ctx: AgentContext, der: bytes) -> None:
    reg = verify_registration(der, ctx.trust, hub=ctx.config.hub_prefix)
    if reg.address != ctx.creds.address:
        raise DocexError("seal_invalid", f"a seal registration for {reg.address} reached {ctx.creds.address}")
    path = ctx.config.home / SEAL_IMAGE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(reg.image_png)
    tmp.replace(path)
    log.info("seal impression registered by the information centre (%s)", reg.sha256[:12])
