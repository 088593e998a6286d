"""The document envelope: package -> inner SignedData -> AuthEnvelopedData -> outer
SignedData carrying the routing header (RFC 2634 triple wrap). Every layer is standard CMS.

The outer eContent is the AuthEnvelopedData itself, as RFC 5652 §5.2 defines eContent for
an eContentType other than id-data (not wrapped in a ContentInfo). OpenSSL writes that
eContent out as it is; `openssl cms -decrypt` wants a ContentInfo, so the recipe frames it
(10 bytes of DER, see ``scripts/cms-frame.sh``) between the first two steps:

    openssl cms -verify  -binary -inform DER -CAfile ca.crt -in ENV -out L2.bare
    scripts/cms-frame.sh L2.bare > L2      # ContentInfo { id-ct-authEnvelopedData, L2.bare }
    openssl cms -decrypt -binary -inform DER -in L2 -recip enc.crt -inkey enc.key -out L3
    openssl cms -verify  -binary -inform DER -CAfile ca.crt -in L3 -out package.zip

Envelopes made before (eContent = a whole ContentInfo, and no authAttrs in the encrypted
layer) still verify and open: :func:`verify_outer` accepts both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from docex.pki import cms
from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.names import CertRole, address_of
from docex.pki.trust import TrustStore
from docex.protocols import package as pkg
from docex.protocols.chunks import CHUNKS_NAME, ChunkKey, ChunkList
from docex.protocols.errors import DocexError
from docex.protocols.header import RoutingHeader
from docex.protocols.manifest import Manifest
from docex.protocols.version import SUPPORTED_VERSIONS

DEFAULT_MAX_ENVELOPE = 64 * 1024 * 1024


@dataclass(frozen=True)
class OuterLayer:
    """What anyone with the trust anchors can learn without the recipient's key."""

    header: RoutingHeader
    signer: x509.Certificate
    encrypted: bytes


@dataclass(frozen=True)
class OpenedEnvelope:
    header: RoutingHeader
    manifest: Manifest
    files: dict[str, bytes]
    signer: x509.Certificate
    inner: bytes = b""  # the inner SignedData (the package signed by the sender): kept as evidence
    # A large document: the key and description of its big file, which follows in chunks
    # (docex.protocols.large); `files` then holds the rest (the sealed PDF...).
    chunk_key: ChunkKey | None = None


def pack(
    manifest: Manifest,
    files: Mapping[str, bytes],
    sender: UnitCredentials,
    recipient_certs: Sequence[x509.Certificate],
    *,
    main_document: str | None = None,
    off_network: frozenset[str] = frozenset(),
    chunks: ChunkList | None = None,
) -> bytes:
    """Seal a document for its recipients; `recipient_certs` are their encryption certs.
    Addresses in `off_network` have none: they stay in the header, and the hub tells the
    sender to deliver those copies on paper."""
    return pack_layers(manifest, files, sender, recipient_certs, main_document=main_document,
                       off_network=off_network, chunks=chunks)[0]


def pack_layers(
    manifest: Manifest,
    files: Mapping[str, bytes],
    sender: UnitCredentials,
    recipient_certs: Sequence[x509.Certificate],
    *,
    main_document: str | None = None,
    off_network: frozenset[str] = frozenset(),
    chunks: ChunkList | None = None,
) -> tuple[bytes, bytes]:
    """`pack`, returning the envelope and its inner SignedData (the sender keeps that as
    evidence of what it sent: it cannot decrypt its own envelope)."""
    if manifest.sender != sender.address:
        raise DocexError("sender_mismatch", f"the manifest names {manifest.sender}, the keys are {sender.address}'s")
    addressed = {address_of(c) for c in recipient_certs}
    missing = set(manifest.all_recipients) - addressed - off_network
    if missing:
        raise DocexError("unknown_recipient", f"no encryption certificate for {', '.join(sorted(missing))}")
    package = pkg.build(manifest, files, main_document=main_document)
    inner = cms.sign(package, sender.sign_cert, sender.sign_key)
    if not recipient_certs:
        # Nobody on the network: the sender alone can open it (a record of what went on paper).
        recipient_certs = [sender.enc_cert]
    encrypted = cms.content_of(
        cms.encrypt(inner, recipient_certs, content_type="signed_data"), "authenticated_enveloped_data"
    )
    header = RoutingHeader(
        message_id=manifest.message_id,
        sender=manifest.sender,
        recipients=manifest.recipients,
        cc=manifest.cc,
        priority=manifest.priority,
        classification=manifest.classification,
        size=len(encrypted),
        created_at=manifest.created_at,
        doc_number=manifest.doc_number,
        title=manifest.title,
        chunks=chunks,
    )
    outer = cms.sign(
        encrypted,
        sender.sign_cert,
        sender.sign_key,
        content_type="authenticated_enveloped_data",
        attributes={"docex_routing_header": header.to_json()},
    )
    return outer, inner


def read_header(envelope: bytes) -> RoutingHeader:
    """The routing header as written, without checking any signature (`envelope inspect`)."""
    try:
        info = cms._ContentInfo.load(envelope, strict=True)
        signer_info = info["content"]["signer_infos"][0]
        for attr in signer_info["signed_attrs"]:
            if attr["type"].native == "docex_routing_header":
                return RoutingHeader.from_json(attr["values"][0].native)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise DocexError("malformed_envelope", "not a docex envelope") from exc
    raise DocexError("malformed_envelope", "the envelope has no routing header")


def _check_size(envelope: bytes, max_size: int) -> None:
    if len(envelope) > max_size:
        raise DocexError("too_large", f"the envelope is {len(envelope)} bytes, over the limit of {max_size}")


def verify_outer(envelope: bytes, trust: TrustStore, *, max_size: int = DEFAULT_MAX_ENVELOPE) -> OuterLayer:
    """Authenticate an envelope's outer layer: signature, chain, revocation, version, and
    that the routing header's sender is the signer's own address."""
    _check_size(envelope, max_size)
    verified = cms.verify(envelope, trust, role=CertRole.SEAL)
    if verified.content_type != "authenticated_enveloped_data":
        raise DocexError("malformed_envelope", "the outer layer must encapsulate the encrypted layer")
    raw_header = verified.attributes.get("docex_routing_header")
    if raw_header is None:
        raise DocexError("malformed_envelope", "the envelope has no routing header")
    header = RoutingHeader.from_json(raw_header)
    if header.protocol_version not in SUPPORTED_VERSIONS:
        raise DocexError("unsupported_version", f"protocol version {header.protocol_version} is not supported")
    header.validate()
    if address_of(verified.signer) != header.sender:
        raise DocexError(
            "sender_mismatch",
            f"signed by {address_of(verified.signer)} but claims to come from {header.sender}",
        )
    if header.size != len(verified.content):
        raise DocexError("malformed_envelope", "the header's size does not match the encrypted layer")
    return OuterLayer(header, verified.signer, _encrypted_layer(verified.content))


_AUTH_ENVELOPED_OID = b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01\x17"  # OID 1.2.840.113549.1.9.16.1.23


def _encrypted_layer(econtent: bytes) -> bytes:
    """The encrypted layer as a ContentInfo (what cms.decrypt and OpenSSL read), from the
    outer eContent: the bare AuthEnvelopedData (RFC 5652 §5.2, envelopes since 2026-12) or,
    in older envelopes, a whole ContentInfo."""
    if econtent[:1] == b"\x30" and len(econtent) > 2:
        # skip the SEQUENCE's length octets: the old shape goes on with the OID, the bare
        # AuthEnvelopedData with its INTEGER version
        first = econtent[1]
        body = 2 + (first & 0x7F if first & 0x80 else 0)
        if econtent[body : body + len(_AUTH_ENVELOPED_OID)] == _AUTH_ENVELOPED_OID:
            return econtent  # the old shape: SEQUENCE { OID authEnvelopedData, [0] ... }
    try:
        return cms.as_content_info("authenticated_enveloped_data", econtent)
    except PkiError as exc:
        raise DocexError("malformed_envelope", "the encrypted layer is damaged") from exc


def open_envelope(
    envelope: bytes,
    me: UnitCredentials,
    trust: TrustStore,
    *,
    max_size: int = DEFAULT_MAX_ENVELOPE,
    max_unpacked: int = pkg.MAX_UNPACKED_BYTES,
) -> OpenedEnvelope:
    """Verify every layer, decrypt with our key, check every file; or raise a named error."""
    outer = verify_outer(envelope, trust, max_size=max_size)
    if me.address not in outer.header.all_recipients:
        raise DocexError("not_a_recipient", f"{me.address} is not among this document's recipients")
    inner_der = cms.decrypt(outer.encrypted, me.enc_cert, me.enc_key)
    inner = cms.verify(inner_der, trust, role=CertRole.SEAL)
    if inner.content_type != "data":
        raise DocexError("malformed_envelope", "the inner layer must sign the package itself")
    if inner.signer.fingerprint(hashes.SHA256()) != outer.signer.fingerprint(hashes.SHA256()):
        raise DocexError("sender_mismatch", "the inner and outer layers are signed by different keys")
    package = pkg.read(inner.content, max_unpacked=max_unpacked)
    m, h = package.manifest, outer.header
    if (m.message_id, m.sender, m.recipients, m.cc, m.priority, m.classification, m.created_at,
        m.doc_number, m.title) != (
        h.message_id, h.sender, h.recipients, h.cc, h.priority, h.classification, h.created_at,
        h.doc_number, h.title
    ):
        raise DocexError("signature_invalid", "the routing header does not match the signed manifest")
    files, chunk_key = package.files, None
    if h.chunks is not None:
        raw = files.pop(CHUNKS_NAME, None)
        if raw is None:
            raise DocexError("signature_invalid", "the header announces chunks the signed package does not describe")
        chunk_key = ChunkKey.from_json(raw)
        chunk_key.matches(h.chunks)
        if chunk_key.name in files:
            raise DocexError("unsafe_filename", f"{chunk_key.name!r} is both in the package and in chunks")
    return OpenedEnvelope(h, m, files, outer.signer, inner_der, chunk_key)
