"""CMS (RFC 5652) signing, verification and AES-256-GCM enveloping (RFC 5083/5084), built
with asn1crypto so that `openssl cms` and any other CMS implementation read the result."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from asn1crypto import algos, core
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from docex.pki.errors import PkiError
from docex.pki.keys import PrivateKey
from docex.pki.names import DOCEX_ARC, CertRole, common_name
from docex.pki.trust import TrustStore

GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16


class GCMParameters(core.Sequence):
    """RFC 5084 GCMParameters; asn1crypto knows the OID but not its parameters."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


algos.EncryptionAlgorithm._oid_specs["aes256_gcm"] = GCMParameters

# asn1crypto.tsp adds names to ContentType's map when first imported, but a reverse map
# built before that (any CMS use) never learns them: then a time-stamp token cannot be
# built ("tst_info"). Import it here, before any use, so every process sees one map.
from asn1crypto import tsp as _tsp  # noqa: E402,F401

asn1_cms.ContentType._reverse_map = None

# RSA-OAEP with SHA-256 and MGF1-SHA-256, encoded once: building it costs more than the
# RSA operation itself.
_OAEP_SHA256_PARAMS = algos.RSAESOAEPParams(
    {
        "hash_algorithm": {"algorithm": "sha256"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
    }
).dump()

# docex's own signed attributes: each holds one OCTET STRING (canonical JSON).
ATTRIBUTE_OIDS: dict[str, str] = {
    "docex_routing_header": f"{DOCEX_ARC}.2.1",
    "docex_statement_type": f"{DOCEX_ARC}.2.2",
    # a large document's chunk: which document and which chunk (docex.protocols.chunks)
    "docex_chunk": f"{DOCEX_ARC}.2.3",
}


class _OctetStrings(core.SetOf):
    _child_spec = core.OctetString


for _name, _oid in ATTRIBUTE_OIDS.items():
    asn1_cms.CMSAttributeType._map[_oid] = _name
    asn1_cms.CMSAttributeType._reverse_map = None
    asn1_cms.CMSAttribute._oid_specs[_name] = _OctetStrings


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _crypto_cert(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(_received(cert))


def _received(value: core.Asn1Value) -> bytes:
    """The bytes a parsed value was read from. Parsing fills in some defaults, which marks
    a structure changed, and dump() then re-encodes all of it field by field: the costliest
    step of a verification, and not the bytes that were signed or hashed. A value built
    here, or read with an indefinite length (BER), is encoded by dump() as before."""
    header, contents = value._header, value._contents
    if header is None or contents is None or header[-1:] == b"\x80":
        return bytes(value.dump())
    return bytes(header + contents)


def _frozen(value: core.Asn1Value) -> core.Asn1Value:
    """The same value re-loaded from its DER. asn1crypto copies and re-encodes a value built
    from Python objects every time it is placed into a parent; a loaded one moves as bytes
    (this made packing an envelope several times faster)."""
    return type(value).load(value.dump())


def _same_name(a: asn1_x509.Name, b: asn1_x509.Name) -> bool:
    """RFC 5280 name matching, with identical encodings (the usual case) as a fast path:
    asn1crypto's normalising comparison is costly."""
    return bool(a.dump() == b.dump() or a == b)


def _issuer_and_serial(cert: asn1_x509.Certificate) -> asn1_cms.IssuerAndSerialNumber:
    return asn1_cms.IssuerAndSerialNumber(
        {"issuer": cert.issuer, "serial_number": cert.serial_number}
    )


@dataclass(frozen=True)
class Verified:
    """What a verified SignedData said: its content, its signer and signed attributes."""

    content: bytes
    content_type: str
    signer: x509.Certificate
    chain: list[x509.Certificate]
    signing_time: dt.datetime | None
    attributes: dict[str, bytes] = field(default_factory=dict)


class _OpaqueEncapsulatedContentInfo(asn1_cms.EncapsulatedContentInfo):
    """eContent kept as octets whatever its type: the outer layer encapsulates a whole
    ContentInfo (so that `openssl cms -decrypt` reads what `-verify` wrote out), which
    asn1crypto would otherwise try to parse as a bare AuthEnvelopedData."""

    _oid_pair = None
    _oid_specs: dict[str, type] = {}


class _SignedData(asn1_cms.SignedData):
    _fields = [
        (f[0], _OpaqueEncapsulatedContentInfo, *f[2:]) if f[0] == "encap_content_info" else f
        for f in asn1_cms.SignedData._fields
    ]
    _spec_callbacks: dict[str, object] = {}


class _ContentInfo(asn1_cms.ContentInfo):
    _oid_specs = {**asn1_cms.ContentInfo._oid_specs, "signed_data": _SignedData}


def _encap_bytes(content_obj: object) -> bytes:
    """The exact eContent octets, as signed (asn1crypto keeps the parsed encoding)."""
    if isinstance(content_obj, core.OctetString | core.ParsableOctetString):
        return bytes(content_obj.contents or b"")
    if isinstance(content_obj, core.Asn1Value):
        return content_obj.dump()
    raise PkiError("malformed_envelope", "the signed content is missing")


def _signing_certificate_v2(cert: asn1_x509.Certificate) -> _tsp.SigningCertificateV2:
    """ESS SigningCertificateV2 (RFC 5035) naming `cert` by its SHA-256 hash and issuer/serial."""
    return _tsp.SigningCertificateV2(
        {
            "certs": [
                {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "cert_hash": hashlib.sha256(cert.dump()).digest(),
                    "issuer_serial": {
                        "issuer": [asn1_x509.GeneralName(name="directory_name", value=cert.issuer)],
                        "serial_number": cert.serial_number,
                    },
                }
            ]
        }
    )


@dataclass(frozen=True)
class _SignerParts:
    signing_certificate: bytes  # DER of the signing-certificate-v2 attribute
    algorithm_protection: bytes  # DER of the CMS algorithm protection attribute
    sid: bytes  # DER of the SignerIdentifier (issuer and serial)


@functools.lru_cache(maxsize=256)
def _signer_parts(cert_der: bytes, is_rsa: bool) -> _SignerParts:
    """What every signature by one certificate repeats, as DER, made once: asn1crypto
    re-encodes a certificate's issuer name field by field whenever a new structure holds
    it, which cost most of a signature's time (about 6 of 8 ms)."""
    a_cert = asn1_x509.Certificate.load(cert_der)
    sig_alg = {"algorithm": "sha256_rsa" if is_rsa else "sha256_ecdsa"}
    return _SignerParts(
        # RFC 5035: binds the signer's certificate (not just issuer and serial) into the
        # signature, so that a re-issued certificate with the same key cannot be swapped in.
        signing_certificate=asn1_cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [_signing_certificate_v2(a_cert)]}
        ).dump(),
        # RFC 6211 / RFC 8933: the algorithms are signed too (no algorithm substitution).
        algorithm_protection=asn1_cms.CMSAttribute({
            "type": "cms_algorithm_protection",
            "values": [asn1_cms.CMSAlgorithmProtection({
                "digest_algorithm": {"algorithm": "sha256"},
                "signature_algorithm": sig_alg,
            })],
        }).dump(),
        sid=asn1_cms.SignerIdentifier({"issuer_and_serial_number": _issuer_and_serial(a_cert)}).dump(),
    )


def _check_signing_certificate(attr: asn1_cms.CMSAttribute, signer: asn1_x509.Certificate) -> None:
    """The first ESSCertIDv2 must name the certificate that verified the signature."""
    ids = attr["values"][0]["certs"]
    if len(ids) == 0:
        raise PkiError("signature_invalid", "the signing-certificate attribute is empty")
    first = ids[0]
    alg = first["hash_algorithm"]["algorithm"].native
    if alg not in ("sha256", "sha384", "sha512"):
        raise PkiError("signature_invalid", f"signing-certificate hash {alg} is not accepted")
    if hashlib.new(alg, _received(signer)).digest() != first["cert_hash"].native:
        raise PkiError("signature_invalid", "the signing-certificate attribute names another certificate")
    issuer_serial = first["issuer_serial"]
    if (
        not isinstance(issuer_serial, core.Void)
        and issuer_serial.native is not None
        and issuer_serial["serial_number"].native != signer.serial_number
    ):
        raise PkiError("signature_invalid", "the signing-certificate attribute names another serial")


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def _pss_padding(params: algos.RSASSAPSSParams) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    """RSASSA-PSS parameters (RFC 4055): SHA-2 with MGF1 of the same hash, trailer 1."""
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    mgf_hash = mgf["parameters"]["algorithm"].native if mgf["algorithm"].native == "mgf1" else None
    if hash_name not in _HASHES or mgf_hash != hash_name or params["trailer_field"].native != "trailer_field_bc":
        raise PkiError("signature_invalid", "RSA-PSS parameters other than SHA-2/MGF1 are not accepted")
    salt = params["salt_length"].native
    if salt < 20:  # RFC 4055 §3.1 default; shorter salts weaken the proof
        raise PkiError("signature_invalid", "RSA-PSS salt is too short")
    algorithm = _HASHES[hash_name]()
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt), algorithm


def sign(
    content: bytes,
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    content_type: str = "data",
    attributes: Mapping[str, bytes] | None = None,
    extra_certs: Sequence[x509.Certificate] = (),
    signing_time: dt.datetime | None = None,
    detached_digest: bytes | None = None,
) -> bytes:
    """CMS SignedData (DER ContentInfo) with the content encapsulated, RSA PKCS#1 v1.5 or
    ECDSA over SHA-256, the signer's certificate (and `extra_certs`) included. With
    `detached_digest` (the SHA-256 of content too large to hold, computed over its file)
    the content is left out: `openssl cms -verify -binary -content FILE` checks it."""
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    a_cert = asn1_x509.Certificate.load(cert_der)
    if detached_digest is not None and (content or len(detached_digest) != 32):
        raise ValueError("a detached signature takes a SHA-256 digest and no content")
    digest = detached_digest if detached_digest is not None else hashlib.sha256(content).digest()
    when = signing_time or dt.datetime.now(dt.UTC)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    sig_alg = {"algorithm": "sha256_rsa" if is_rsa else "sha256_ecdsa"}
    parts = _signer_parts(cert_der, is_rsa)
    signed_attrs = [
        asn1_cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
        asn1_cms.CMSAttribute({"type": "signing_time", "values": [asn1_cms.Time({"utc_time": when})]}),
        asn1_cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
        # RFC 5035 signing certificate, RFC 6211 algorithm protection: the same for every
        # signature by this certificate, built once (see _signer_parts).
        asn1_cms.CMSAttribute.load(parts.signing_certificate),
        asn1_cms.CMSAttribute.load(parts.algorithm_protection),
    ]
    for name, value in (attributes or {}).items():
        if name not in ATTRIBUTE_OIDS:
            raise ValueError(f"unknown docex attribute {name}")
        signed_attrs.append(asn1_cms.CMSAttribute({"type": name, "values": [value]}))
    attrs = _frozen(asn1_cms.CMSAttributes(signed_attrs))
    to_sign = attrs.dump()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
    signer_info = asn1_cms.SignerInfo(
        {
            "version": "v1",
            "sid": asn1_cms.SignerIdentifier.load(parts.sid),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attrs,
            "signature_algorithm": sig_alg,
            "signature": signature,
        }
    )
    encap: dict[str, object] = {"content_type": content_type}
    if detached_digest is None:
        encap["content"] = core.ParsableOctetString(content)
    signed_data = _SignedData(
        {
            "version": "v1" if content_type == "data" else "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": encap,
            "certificates": [a_cert, *(_asn1_cert(c) for c in extra_certs)],
            "signer_infos": [_frozen(signer_info)],
        }
    )
    return _ContentInfo({"content_type": "signed_data", "content": _frozen(signed_data)}).dump()


def _load_content_info(der: bytes, expected: str) -> asn1_cms.ContentInfo:
    try:
        info = _ContentInfo.load(der, strict=True)
        kind = info["content_type"].native
        if kind != expected:
            raise PkiError("malformed_envelope", f"expected CMS {expected}, found {kind}")
        # Parse the whole structure now, not in the middle of checks (without converting
        # it all to Python values: that cost most of an envelope's verification time).
        info["content"]._parse_children(recurse=True)
        return info
    except PkiError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise PkiError("malformed_envelope", f"not a well-formed CMS {expected}") from exc


def verify(
    der: bytes,
    trust: TrustStore,
    *,
    role: CertRole | None = None,
    at: dt.datetime | None = None,
    detached_digest: bytes | None = None,
) -> Verified:
    """Verify a CMS SignedData: the signature, the content digest, the signer's chain to a
    trust anchor and its revocation. Raises PkiError with a stable code. A detached
    signature is checked against `detached_digest` (the SHA-256 of its content's file)."""
    info = _load_content_info(der, "signed_data")
    signed_data = info["content"]
    try:
        signer_infos = list(signed_data["signer_infos"])
        if len(signer_infos) != 1:
            raise PkiError("malformed_envelope", "exactly one signer is expected")
        signer_info = signer_infos[0]
        encap = signed_data["encap_content_info"]
        content_type = encap["content_type"].native
        # The versions and the digest-algorithm list are not covered by the signature; pin
        # them to what RFC 5652 prescribes for this shape so that no byte can change unseen.
        expected_version = "v1" if content_type == "data" else "v3"
        if signed_data["version"].native != expected_version or signer_info["version"].native != "v1":
            raise PkiError("malformed_envelope", "the signature structure has unexpected version numbers")
        if [a["algorithm"].native for a in signed_data["digest_algorithms"]] != ["sha256"]:
            raise PkiError("malformed_envelope", "the message must list exactly the SHA-256 digest")
        content_obj = encap["content"]
        absent = isinstance(content_obj, core.Void) or content_obj is None
        if detached_digest is not None:
            if not absent:
                raise PkiError("malformed_envelope", "a detached signature was expected, the content is inside")
            content = b""
        elif absent:
            raise PkiError("malformed_envelope", "the signed content is missing (detached)")
        else:
            content = _encap_bytes(content_obj)
        certs = [c.chosen for c in signed_data["certificates"] or [] if c.name == "certificate"]
        sid = signer_info["sid"]
        if sid.name != "issuer_and_serial_number":
            raise PkiError("malformed_envelope", "only issuerAndSerialNumber signer ids are accepted")
        wanted = sid.chosen
        signer_asn1 = next(
            (
                c
                for c in certs
                if c.serial_number == wanted["serial_number"].native and _same_name(c.issuer, wanted["issuer"])
            ),
            None,
        )
        if signer_asn1 is None:
            raise PkiError("certificate_untrusted", "the signer's certificate is not in the message")
        signed_attrs = signer_info["signed_attrs"]
        if not signed_attrs or isinstance(signed_attrs, core.Void):
            raise PkiError("signature_invalid", "the signature has no signed attributes")
        attrs: dict[str, asn1_cms.CMSAttribute] = {a["type"].native: a for a in signed_attrs}
        digest_alg = signer_info["digest_algorithm"]["algorithm"].native
        if digest_alg != "sha256":
            raise PkiError("signature_invalid", f"digest algorithm {digest_alg} is not accepted")
        if "message_digest" not in attrs or "content_type" not in attrs:
            raise PkiError("signature_invalid", "the signature lacks message-digest or content-type")
        if attrs["content_type"]["values"][0].native != content_type:
            raise PkiError("signature_invalid", "signed content type does not match the content")
        expected_digest = attrs["message_digest"]["values"][0].native
        # re-tag [0] IMPLICIT as SET OF, as the signature was computed over the SET
        to_verify = b"\x31" + _received(signed_attrs)[1:]
        signature = signer_info["signature"].native
        sig_alg_field = signer_info["signature_algorithm"]
        sig_alg = sig_alg_field.signature_algo
        pss: tuple[padding.PSS, hashes.HashAlgorithm] | None = None
        if sig_alg == "rsassa_pss":
            pss = _pss_padding(sig_alg_field["parameters"])
            if not isinstance(pss[1], hashes.SHA256):
                raise PkiError("signature_invalid", "RSA-PSS must use SHA-256 like the message digest")
        if "cms_algorithm_protection" in attrs:
            protected = attrs["cms_algorithm_protection"]["values"][0]
            if (
                protected["digest_algorithm"]["algorithm"].native != digest_alg
                or protected["signature_algorithm"].contents != sig_alg_field.contents
            ):
                raise PkiError("signature_invalid", "the signed algorithms differ from those used (RFC 6211)")
        signing_time = attrs["signing_time"]["values"][0].native if "signing_time" in attrs else None
        extra: dict[str, bytes] = {}
        for name in ATTRIBUTE_OIDS:
            if name in attrs:
                extra[name] = attrs[name]["values"][0].native
    except PkiError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise PkiError("malformed_envelope", "the signature structure is damaged") from exc

    actual = detached_digest if detached_digest is not None else hashlib.sha256(content).digest()
    if actual != expected_digest:
        raise PkiError("signature_invalid", "the content was changed after it was signed")
    try:
        if "signing_certificate_v2" in attrs:
            _check_signing_certificate(attrs["signing_certificate_v2"], signer_asn1)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise PkiError("malformed_envelope", "the signing-certificate attribute is damaged") from exc
    try:
        # cryptography parses lazily and more strictly than asn1crypto: parse every field
        # now, so that a damaged certificate is a malformed message, not a crash later on.
        signer = _crypto_cert(signer_asn1)
        public_key = signer.public_key()
        others = [_crypto_cert(c) for c in certs if c is not signer_asn1]
        for cert in (signer, *others):
            _ = cert.subject, cert.issuer, cert.extensions
    except (
        ValueError,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        UnsupportedAlgorithm,
    ) as exc:
        raise PkiError("malformed_envelope", "a certificate in the message is damaged") from exc
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and pss is not None:
            public_key.verify(signature, to_verify, pss[0], pss[1])
        elif isinstance(public_key, rsa.RSAPublicKey) and sig_alg in ("rsassa_pkcs1v15", "rsa"):
            public_key.verify(signature, to_verify, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and sig_alg == "ecdsa":
            public_key.verify(signature, to_verify, ec.ECDSA(hashes.SHA256()))
        else:
            raise PkiError("signature_invalid", f"signature algorithm {sig_alg} is not accepted")
    except InvalidSignature as exc:
        raise PkiError("signature_invalid", f"the signature of {common_name(signer)} does not verify") from exc
    chain = trust.verify(signer, role=role, at=at, extra_certs=others)
    return Verified(content, content_type, signer, chain, signing_time, extra)


def encrypt(
    content: bytes,
    recipients: Iterable[x509.Certificate],
    *,
    content_type: str = "signed_data",
) -> bytes:
    """CMS AuthEnvelopedData: AES-256-GCM content, one RSA-OAEP-SHA256 key transport per
    recipient. Decryptable by `openssl cms -decrypt` (OpenSSL 3)."""
    cek = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(GCM_NONCE_BYTES)
    # RFC 5083 §2.1: authAttrs MUST be present when the content is not id-data; their DER
    # (as a SET OF) is the GCM additional data, so the tag covers the content type too.
    auth_attrs = None
    if content_type != "data":
        auth_attrs = _frozen(asn1_cms.CMSAttributes(
            [asn1_cms.CMSAttribute({"type": "content_type", "values": [content_type]})]
        ))
    sealed = AESGCM(cek).encrypt(nonce, content, auth_attrs.dump() if auth_attrs is not None else None)
    ciphertext, tag = sealed[:-GCM_TAG_BYTES], sealed[-GCM_TAG_BYTES:]
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    oaep_alg = {"algorithm": "rsaes_oaep", "parameters": algos.RSAESOAEPParams.load(_OAEP_SHA256_PARAMS)}
    infos = []
    for cert in recipients:
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise PkiError("wrong_certificate_role", f"{common_name(cert)}: encryption needs an RSA key")
        infos.append(
            _frozen(asn1_cms.RecipientInfo(
                {
                    "ktri": {
                        "version": "v0",
                        "rid": {"issuer_and_serial_number": _issuer_and_serial(_asn1_cert(cert))},
                        "key_encryption_algorithm": oaep_alg,
                        "encrypted_key": public_key.encrypt(cek, oaep),
                    }
                }
            ))
        )
    if not infos:
        raise PkiError("no_recipients", "an envelope needs at least one recipient")
    fields: dict[str, object] = {
        "version": "v0",
        "recipient_infos": infos,
        "auth_encrypted_content_info": {
            "content_type": content_type,
            "content_encryption_algorithm": {
                "algorithm": "aes256_gcm",
                "parameters": GCMParameters({"aes_nonce": nonce, "aes_icvlen": GCM_TAG_BYTES}),
            },
            "encrypted_content": ciphertext,
        },
        "mac": tag,
    }
    if auth_attrs is not None:
        fields["auth_attrs"] = auth_attrs
    enveloped = asn1_cms.AuthEnvelopedData(fields)
    return asn1_cms.ContentInfo(
        {"content_type": "authenticated_enveloped_data", "content": _frozen(enveloped)}
    ).dump()


def recipient_serials(der: bytes) -> list[tuple[str, int]]:
    """(issuer DN, serial) of every recipient of an AuthEnvelopedData, without decrypting."""
    info = _load_content_info(der, "authenticated_enveloped_data")
    result = []
    for ri in info["content"]["recipient_infos"]:
        if ri.name == "ktri" and ri.chosen["rid"].name == "issuer_and_serial_number":
            ias = ri.chosen["rid"].chosen
            result.append((ias["issuer"].human_friendly, ias["serial_number"].native))
    return result


def decrypt(der: bytes, cert: x509.Certificate, key: PrivateKey) -> bytes:
    """Open an AuthEnvelopedData addressed to `cert`. Raises not_a_recipient or
    decryption_failed (a changed byte fails the GCM tag)."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError("key_unreadable", "decryption needs an RSA key")
    info = _load_content_info(der, "authenticated_enveloped_data")
    try:
        env = info["content"]
        wanted = _issuer_and_serial(_asn1_cert(cert))
        encrypted_key = None
        for ri in env["recipient_infos"]:
            if ri.name != "ktri":
                continue
            rid = ri.chosen["rid"]
            if rid.name != "issuer_and_serial_number":
                continue
            ias = rid.chosen
            if ias["serial_number"].native == wanted["serial_number"].native and _same_name(ias["issuer"], wanted["issuer"]):
                if ri.chosen["key_encryption_algorithm"]["algorithm"].native != "rsaes_oaep":
                    raise PkiError("malformed_envelope", "key transport must be RSA-OAEP")
                encrypted_key = ri.chosen["encrypted_key"].native
                break
        if encrypted_key is None:
            raise PkiError("not_a_recipient", f"this envelope is not addressed to {common_name(cert)}")
        eci = env["auth_encrypted_content_info"]
        alg = eci["content_encryption_algorithm"]
        if alg["algorithm"].native != "aes256_gcm":
            raise PkiError("malformed_envelope", f"content cipher {alg['algorithm'].native} is not accepted")
        params = alg["parameters"]
        nonce = params["aes_nonce"].native
        ciphertext = eci["encrypted_content"].native or b""
        tag = env["mac"].native
        auth_attrs = env["auth_attrs"]
        aad = None if isinstance(auth_attrs, core.Void) or not auth_attrs else b"\x31" + auth_attrs.dump()[1:]
        if aad is not None:
            declared = [a["values"][0].native for a in auth_attrs if a["type"].native == "content_type"]
            if declared and declared[0] != eci["content_type"].native:
                raise PkiError("malformed_envelope", "the authenticated content type differs from the content's")
        # Envelopes made before docex followed RFC 5083 §2.1 have no authAttrs: still opened
        # (the GCM tag and the inner signature protect them), never made any more.
    except PkiError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise PkiError("malformed_envelope", "the encrypted layer is damaged") from exc
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    try:
        cek = key.decrypt(encrypted_key, oaep)
        return AESGCM(cek).decrypt(nonce, ciphertext + tag, aad)
    except (ValueError, InvalidTag) as exc:
        raise PkiError("decryption_failed", "the encrypted content cannot be opened: damaged or changed") from exc


def content_of(der: bytes, expected: str) -> bytes:
    """The DER of the content inside a ContentInfo of type `expected`: what RFC 5652 §5.2
    puts into a SignedData's eContent when eContentType is not id-data."""
    info = _load_content_info(der, expected)
    return bytes(info["content"].untag().dump())


def as_content_info(kind: str, content_der: bytes) -> bytes:
    """A ContentInfo of type `kind` around an already encoded content (inverse of content_of)."""
    spec = asn1_cms.ContentInfo._oid_specs[kind]
    try:
        value = spec.load(content_der, strict=True)
    except (ValueError, TypeError) as exc:
        raise PkiError("malformed_envelope", f"not a well-formed CMS {kind}") from exc
    return bytes(asn1_cms.ContentInfo({"content_type": kind, "content": value}).dump())


def recipient_ids(der: bytes) -> list[tuple[bytes, int]]:
    """(issuer name DER, serial) of every key-transport recipient of an AuthEnvelopedData:
    whom it is encrypted to, readable without any key."""
    out: list[tuple[bytes, int]] = []
    try:
        for ri in _recipient_infos(der):
            if ri.name != "ktri" or ri.chosen["rid"].name != "issuer_and_serial_number":
                raise PkiError("malformed_envelope", "recipients must be named by issuer and serial number")
            ias = ri.chosen["rid"].chosen
            out.append((ias["issuer"].dump(), int(ias["serial_number"].native)))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise PkiError("malformed_envelope", "the recipient infos are not well formed") from exc
    return out


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end) of the DER element at `pos` (low tag numbers only)."""
    tag, first = der[pos], der[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise ValueError("indefinite or huge length")
    length = int.from_bytes(der[pos + 2 : pos + 2 + count], "big")
    return tag, pos + 2 + count, pos + 2 + count + length


def _recipient_infos(der: bytes) -> asn1_cms.RecipientInfos:
    """The RecipientInfos of an AuthEnvelopedData ContentInfo, found by walking the DER
    headers: nothing of the (large) ciphertext after them is parsed or copied."""
    tag, pos, end = _tlv(der, 0)  # ContentInfo
    if tag != 0x30 or end != len(der):
        raise ValueError("not a ContentInfo")
    tag, start, pos = _tlv(der, pos)  # contentType
    if tag != 0x06 or der[start:pos] != _AUTH_ENVELOPED_OID:
        raise PkiError("malformed_envelope", "expected CMS authenticated_enveloped_data")
    tag, pos, _ = _tlv(der, pos)  # [0] EXPLICIT
    tag2, pos, _ = _tlv(der, pos)  # AuthEnvelopedData
    if tag != 0xA0 or tag2 != 0x30:
        raise ValueError("not an AuthEnvelopedData")
    _, _, pos = _tlv(der, pos)  # version
    tag, _, after = _tlv(der, pos)
    if tag == 0xA0:  # originatorInfo
        pos = after
        tag, _, after = _tlv(der, pos)
    if tag != 0x31:
        raise ValueError("no RecipientInfos")
    return asn1_cms.RecipientInfos.load(der[pos:after], strict=True)


_AUTH_ENVELOPED_OID = bytes.fromhex("2a864886f70d0109100117")  # 1.2.840.113549.1.9.16.1.23


def same_issuer(name_der: bytes, name: x509.Name) -> bool:
    """Whether an issuer name (DER, as in a RecipientInfo) is `name` (RFC 5280 matching)."""
    return _same_name(asn1_x509.Name.load(name_der), asn1_x509.Name.load(name.public_bytes()))
