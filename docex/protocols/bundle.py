"""Evidence bundles: everything a third party needs to check one document's delivery
without our servers, years later (`docex evidence export / verify / renew`).

    MANIFEST.json          what is in the bundle: SHA-256 of every other file
    archive/0001.tsr       RFC 3161 token over MANIFEST.json
    archive/NNNN/certs/*.pem, archive/NNNN/crls/*.pem   (renewal N = 2, 3, ...) validation
                           data as it stood at renewal N: the certificates and current CRLs
                           of every CA the earlier archive token and the signatures rely on
    archive/NNNN/index.sha256   SHA-256 of each of those files (`sha256sum -c` format)
    archive/NNNN.tsr       token over MANIFEST.json, then each earlier renewal's index and
                           token in order (0001.tsr, 0002/index.sha256, 0002.tsr, ...), then
                           archive/NNNN/index.sha256 (RFC 4998 / ETSI EN 319 102-1 renewal)
    envelope.p7m           the envelope as it travelled (outer SignedData)
    inner.p7m              the sender's inner SignedData over the package (the content
                           itself), when the exporter is the sender or a recipient
    evidence/NN-EVENT-ISSUER.p7s   each evidence (CMS SignedData with its timestamp)
    evidence/NN-EVENT-ISSUER.tsr   its timestamp token alone (DER)
    evidence/NN-EVENT-ISSUER.sig   the signature value that token covers
    certs/*.pem, crls/*.pem        certificates and CRLs needed to check the chains
    audit/entries.jsonl    the hub's audit entries from the document's first to the
                           covering checkpoint's head (hub exports only)
    audit/checkpoint.p7s   that signed, timestamped checkpoint
    timeline.txt / .json   the document's life, zh-CN then English

Verification needs only the bundle and the CA certificates: no server, no network."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import posixpath
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from docex.pki import cms
from docex.pki.errors import PkiError
from docex.pki.names import CertRole, address_of
from docex.pki.timestamps import (
    RENEW_MARGIN,
    ArchiveStatus,
    Stamper,
    TokenInfo,
    signature_timestamp,
    signature_value,
    token_time,
    verify_token,
)
from docex.pki.trust import TrustStore
from docex.protocols import evidence as ev
from docex.protocols.checkpoint import entry_hash, read_checkpoint, unverified_payload
from docex.protocols.errors import DocexError
from docex.protocols.header import RoutingHeader

FORMAT = "docex-evidence-1"
MANIFEST = "MANIFEST.json"
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
_ARCHIVE = re.compile(r"^archive/(\d{4})\.tsr$")
_RENEWAL_DATA = re.compile(r"^archive/(\d{4})/(certs|crls)/[0-9a-f]{16}\.pem$")
_RENEWAL_INDEX = re.compile(r"^archive/(\d{4})/index\.sha256$")
CLOCK_SKEW = dt.timedelta(minutes=10)  # between a CA's clock and the TSA's
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _fingerprint(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex()


def _order_key(der: bytes) -> tuple[str, str]:
    token = signature_timestamp(der)
    when = token_time(token).isoformat() if token is not None else "9999"
    _, payload = ev.peek(der)
    return when, str(payload.get("at", ""))


def best_versions(statements: Sequence[bytes]) -> list[bytes]:
    """One per signature: the timestamped copy where there is one (the hub stamps an
    agent's receipt on its behalf; both copies are kept, the bundle needs one)."""
    best: dict[bytes, bytes] = {}
    for der in statements:
        key = signature_value(der)
        if key not in best or (signature_timestamp(best[key]) is None and signature_timestamp(der) is not None):
            best[key] = der
    return sorted(best.values(), key=_order_key)


@dataclass
class BundleParts:
    message_id: str
    envelope: bytes
    evidences: list[bytes]
    exported_by: str
    inner: bytes | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    audit_entries: list[dict[str, Any]] | None = None
    checkpoint: bytes | None = None


def _header(envelope: bytes) -> RoutingHeader:
    from docex.protocols.envelope import read_header

    return read_header(envelope)


def timeline_rows(evidences: Sequence[ev.Evidence]) -> list[dict[str, Any]]:
    rows = []
    for e in sorted(evidences, key=lambda e: (e.at or dt.datetime.max.replace(tzinfo=dt.UTC), e.claimed_at)):
        zh, en = e.label()
        rows.append({"at": e.at.isoformat() if e.at else None, "event": e.event, "zh": zh, "en": en,
                     "issuer": e.issuer, "issuer_name": e.issuer_name, **e.details})
    return rows


def _show(value: str | None) -> str:
    if not value:
        return "（无时间戳 no timestamp）"
    from docex.protocols.localtime import show

    return show(dt.datetime.fromisoformat(value))


def timeline_text(header: RoutingHeader, digest: str, rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"公文 {header.doc_number} 《{header.title}》", f"发文单位 {header.sender}",
             f"信封摘要 SHA-256 {digest}", "", "时间线（时间为可信时间戳）："]
    for r in rows:
        extra = "".join(f"  {k_zh}：{r[k]}" for k, k_zh in (("person", "签收人/经办人"), ("reason", "理由"),
                                                          ("code", "代码")) if r.get(k))
        lines.append(f"  {_show(r['at'])}  {r['zh']}  {r['issuer_name']}（{r['issuer']}）{extra}")
    lines += ["", f"Document {header.doc_number} \"{header.title}\" from {header.sender}",
              f"Envelope SHA-256 {digest}", "", "Timeline (trusted timestamps):"]
    for r in rows:
        extra = "".join(f"  {k}: {r[k]}" for k in ("person", "reason", "code") if r.get(k))
        lines.append(f"  {r['at'] or 'no timestamp'}  {r['en']}  {r['issuer_name']} ({r['issuer']}){extra}")
    return "\n".join(lines) + "\n"


def _unverified_evidence(der: bytes) -> ev.Evidence:
    """For the exporter's own timeline: what each statement says (the verifier re-reads)."""
    kind, p = ev.peek(der)
    token = signature_timestamp(der)
    info = None
    if token is not None:
        info = TokenInfo(token_time(token), 0, None, [], b"")  # type: ignore[arg-type]
    issuer = str(p.get("recipient") or p.get("hub") or "")
    details = {k: p[k] for k in ("person", "reason", "code") if p.get(k)}
    if p.get("error"):
        details["code"] = p["error"]
    return ev.Evidence(kind, str(p.get("event", "")), str(p.get("message_id", "")),
                       str(p.get("envelope_sha256", "")), issuer, issuer, str(p.get("at", "")), details, info)


def build(parts: BundleParts, stamper: Stamper, *, now: dt.datetime | None = None) -> bytes:
    """The bundle as ZIP bytes, sealed by an archive timestamp over its manifest."""
    files: dict[str, bytes] = {"envelope.p7m": parts.envelope}
    digest = hashlib.sha256(parts.envelope).hexdigest()
    header = _header(parts.envelope)
    if parts.inner:
        files["inner.p7m"] = parts.inner
    certs: dict[str, x509.Certificate] = {}
    statements = best_versions(parts.evidences)
    for index, der in enumerate(statements, 1):
        kind, p = ev.peek(der)
        issuer = re.sub(r"[^A-Za-z0-9.-]", "_", str(p.get("recipient") or p.get("hub") or "x"))
        stem = f"evidence/{index:02d}-{p.get('event', 'x')}-{issuer}"
        files[f"{stem}.p7s"] = der
        token = signature_timestamp(der)
        if token is not None:
            files[f"{stem}.tsr"] = token
            files[f"{stem}.sig"] = signature_value(der)
        for cert in ev.signer_certificates(der):
            certs[_fingerprint(cert)] = cert
    for cert in parts.certificates:
        certs[_fingerprint(cert)] = cert
    for cert in ev.signer_certificates(parts.envelope):
        certs[_fingerprint(cert)] = cert
    for fp, cert in sorted(certs.items()):
        files[f"certs/{fp[:16]}.pem"] = _pem(cert)
    for crl in parts.crls:
        pem = crl.public_bytes(serialization.Encoding.PEM)
        files[f"crls/{hashlib.sha256(pem).hexdigest()[:16]}.pem"] = pem
    if parts.audit_entries is not None and parts.checkpoint is not None:
        files["audit/entries.jsonl"] = "".join(
            json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in parts.audit_entries).encode()
        files["audit/checkpoint.p7s"] = parts.checkpoint
        token = signature_timestamp(parts.checkpoint)
        if token is not None:
            files["audit/checkpoint.tsr"] = token
            files["audit/checkpoint.sig"] = signature_value(parts.checkpoint)
        for cert in ev.signer_certificates(parts.checkpoint):
            files[f"certs/{_fingerprint(cert)[:16]}.pem"] = _pem(cert)
    rows = timeline_rows([_unverified_evidence(d) for d in statements])
    files["timeline.json"] = json.dumps(rows, ensure_ascii=False, indent=1).encode()
    files["timeline.txt"] = timeline_text(header, digest, rows).encode()
    manifest = {
        "format": FORMAT,
        "message_id": parts.message_id,
        "envelope_sha256": digest,
        "exported_by": parts.exported_by,
        "exported_at": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode()
    files[MANIFEST] = manifest_bytes
    files["archive/0001.tsr"] = stamper(hashlib.sha256(manifest_bytes).digest())
    return _zip(files)


def _zip(files: dict[str, bytes]) -> bytes:
    """One canonical ZIP for a set of files (stored, fixed dates, fixed order), so that the
    verifier can rebuild it and find a changed byte even in the ZIP's own headers."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(files, key=lambda n: (n != MANIFEST, n)):
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return out.getvalue()


def read_files(data: bytes) -> dict[str, bytes]:
    """The bundle's files; refuses unsafe or duplicate names, and anything oversized."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise DocexError("too_large", "the bundle is larger than any evidence bundle can be")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        files: dict[str, bytes] = {}
        total = 0
        for info in zf.infolist():
            name = info.filename
            if not _SAFE_NAME.match(name) or posixpath.normpath(name) != name or ".." in name.split("/"):
                raise DocexError("unsafe_filename", f"the bundle holds an unsafe name {name!r}")
            if name in files:
                raise DocexError("evidence_invalid", f"the bundle holds {name} twice")
            if info.compress_type != zipfile.ZIP_STORED:
                raise DocexError("evidence_invalid", f"{name} is not stored as docex writes bundles")
            total += info.file_size
            if total > MAX_BUNDLE_BYTES:
                raise DocexError("too_large", "the bundle unpacks to more than any evidence bundle can")
            files[name] = zf.read(info)
        return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError,
            RuntimeError) as exc:
        raise DocexError("evidence_invalid", f"not a readable evidence bundle: {exc}") from exc


def _token_name(n: int) -> str:
    return f"archive/{n:04d}.tsr"


def _index_name(n: int) -> str:
    return f"archive/{n:04d}/index.sha256"


def archive_covered(files: dict[str, bytes], n: int) -> bytes:
    """What archive timestamp `n` covers: MANIFEST.json, each earlier renewal's index and
    token in order, then renewal n's own index (renewals made before docex added
    validation data have no index: then nothing stands in its place)."""
    parts = [files[MANIFEST]]
    for k in range(1, n + 1):
        if k > 1 and _index_name(k) in files:
            parts.append(files[_index_name(k)])
        if k < n:
            parts.append(files[_token_name(k)])
    return b"".join(parts)


def _index(files: dict[str, bytes], n: int) -> bytes:
    """Renewal n's index: `sha256sum` lines for its validation data, sorted."""
    prefix = f"archive/{n:04d}/"
    names = sorted(name for name in files if name.startswith(prefix) and _RENEWAL_DATA.match(name))
    return "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in names).encode()


def _certificates_in(der: bytes) -> list[x509.Certificate]:
    """The certificates a CMS SignedData (a timestamp token) carries."""
    info = cms._ContentInfo.load(der)
    return [x509.load_der_x509_certificate(c.chosen.dump())
            for c in info["content"]["certificates"] or [] if c.name == "certificate"]


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject or not _is_ca(issuer):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _issuer(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> x509.Certificate | None:
    if cert.issuer == cert.subject:
        return None  # a root: nobody vouches for it but the verifier
    return next((c for c in pool if _issued_by(cert, c)), None)


def _chain(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    chain = [cert]
    while len(chain) <= 4 and (issuer := _issuer(chain[-1], pool)) is not None and issuer not in chain:
        chain.append(issuer)
    return chain


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _ca_name(cert: x509.Certificate) -> str:
    from docex.pki.names import common_name

    return common_name(cert) or cert.subject.rfc4514_string()


@dataclass
class Renewal:
    """A renewed bundle and what went into it."""

    data: bytes
    number: int  # the archive timestamp added (2, 3, ...)
    refreshed: list[str]  # CAs whose current CRL the renewal carries
    not_refreshed: list[str]  # CAs of signers' chains with no current CRL at hand (not fatal)


def renew(data: bytes, stamper: Stamper, *, anchors: Sequence[x509.Certificate],
          crls: Sequence[x509.CertificateRevocationList], certificates: Sequence[x509.Certificate] = (),
          now: dt.datetime | None = None) -> Renewal:
    """The bundle with one more archive timestamp, ETSI EN 319 102-1 / RFC 4998 style: first
    the validation data as it stands now (the current CRL and the certificate of every CA
    that the newest archive timestamp's TSA and the bundle's signers depend on) goes into
    archive/NNNN/, then a timestamp covers it with the manifest and every earlier archive
    token. The newest archive timestamp must still verify now, with those CRLs: a renewal
    after it expired or was revoked proves nothing. Nothing else in the bundle changes.

    Raises DocexError(crl_missing / crl_stale) when there is no current CRL of a CA on that
    timestamp's chain, and the PkiError of that timestamp when it no longer verifies."""
    when = now or dt.datetime.now(dt.UTC)
    files = read_files(data)
    if MANIFEST not in files:
        raise DocexError("evidence_invalid", "the bundle has no MANIFEST.json")
    count = sum(1 for n in files if _ARCHIVE.match(n))
    if count == 0 or any(_token_name(k) not in files for k in range(1, count + 1)):
        raise DocexError("evidence_invalid", "the bundle's archive timestamps are not numbered 0001, 0002, ...")
    number = count + 1
    newest = files[_token_name(count)]

    # Every certificate the bundle holds or relies on, and the CAs we were handed.
    pool: dict[str, x509.Certificate] = {}
    for cert in [*anchors, *certificates]:
        pool[_fingerprint(cert)] = cert
    for name, blob in files.items():
        if name.endswith(".pem") and (name.startswith("certs/") or "/certs/" in name):
            for cert in x509.load_pem_x509_certificates(blob):
                pool[_fingerprint(cert)] = cert
        elif _ARCHIVE.match(name) or (name.startswith("evidence/") and name.endswith(".tsr")) \
                or name == "audit/checkpoint.tsr":
            for cert in _certificates_in(blob):
                pool[_fingerprint(cert)] = cert
    certs = list(pool.values())
    tsa_cert = _token_signer(newest, certs)
    required = _chain(tsa_cert, certs)
    depends: dict[str, x509.Certificate] = {}  # the CAs whose current CRL the renewal carries
    for cert in certs:
        issuer = _issuer(cert, certs)
        if issuer is not None:
            depends[_fingerprint(issuer)] = issuer

    def current(issuer: x509.Certificate) -> x509.CertificateRevocationList | None:
        mine = [c for c in crls if _crl_signed_by(c, issuer)]
        return max(mine, key=lambda c: c.last_update_utc, default=None)

    chosen: dict[str, x509.CertificateRevocationList] = {}
    not_refreshed: list[str] = []
    for fp, issuer in sorted(depends.items()):
        crl = current(issuer)
        on_chain = any(_fingerprint(c) == fp for c in required[1:])
        if crl is None or (crl.next_update_utc is not None and crl.next_update_utc < when):
            if on_chain:
                if crl is None:
                    raise DocexError("crl_missing", f"no current CRL of {_ca_name(issuer)}, which issued the "
                                                    "newest archive timestamp's TSA certificate: give it to renew")
                raise DocexError("crl_stale", f"the CRL of {_ca_name(issuer)} expired on "
                                              f"{crl.next_update_utc:%Y-%m-%d %H:%M} UTC: refresh it first")
            not_refreshed.append(_ca_name(issuer))
            continue
        chosen[fp] = crl

    # The newest archive timestamp must still prove something now, by these CRLs.
    trust = TrustStore(list(anchors), [], [c for c in certs if _is_ca(c)])
    for crl in chosen.values():
        trust.add_crl(crl)
    verify_token(newest, trust, data=archive_covered(files, count), at=when)

    prefix = f"archive/{number:04d}"
    for fp, issuer in depends.items():
        files[f"{prefix}/certs/{fp[:16]}.pem"] = _pem(issuer)
    for cert in required:
        files[f"{prefix}/certs/{_fingerprint(cert)[:16]}.pem"] = _pem(cert)
    for crl in chosen.values():
        pem = crl.public_bytes(serialization.Encoding.PEM)
        files[f"{prefix}/crls/{hashlib.sha256(pem).hexdigest()[:16]}.pem"] = pem
    files[_index_name(number)] = _index(files, number)
    files[_token_name(number)] = stamper(hashlib.sha256(archive_covered(files, number)).digest())
    refreshed = sorted(_ca_name(depends[fp]) for fp in chosen)
    return Renewal(_zip(files), number, refreshed, sorted(set(not_refreshed)))


def _token_signer(token: bytes, pool: Sequence[x509.Certificate]) -> x509.Certificate:
    """The TSA certificate that signed a token, by the signer's serial number (the token's
    signature itself is checked when the token is verified)."""
    from docex.pki.timestamps import _signer_info

    sid = _signer_info(cms._ContentInfo.load(token))["sid"]
    if sid.name == "issuer_and_serial_number":
        serial = sid.chosen["serial_number"].native
        for cert in [*_certificates_in(token), *pool]:
            if cert.serial_number == serial and not _is_ca(cert):
                return cert
    raise DocexError("timestamp_invalid", "an archive timestamp does not carry its TSA's certificate")


# -- verification ---------------------------------------------------------------------------------
@dataclass
class BundleReport:
    ok: bool = True
    status: str = "VALID"  # VALID | RENEWAL_DUE | INDETERMINATE | INVALID
    message_id: str = ""
    envelope_sha256: str = ""
    doc_number: str = ""
    title: str = ""
    sender: str = ""
    exported_by: str = ""
    archive: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def fail(self, code: str, message: str) -> None:
        self.ok = False
        self.status = "INVALID"
        self.problems.append({"code": code, "message": message})


def _trust(files: dict[str, bytes], anchors: Sequence[x509.Certificate]) -> TrustStore:
    """Anchors from the verifier; CA certificates and CRLs from the bundle and its renewals.
    A CRL counts only when a known CA signed it: a forged "newer" CRL must not push the
    genuine one aside (the store keeps one per issuer name)."""
    crls = []
    intermediates = []
    for name, data in files.items():
        if name.startswith("crls/") or _RENEWAL_DATA.match(name) and "/crls/" in name:
            crls.append(x509.load_pem_x509_crl(data))
        elif name.startswith("certs/") or _RENEWAL_DATA.match(name):
            intermediates.extend(x509.load_pem_x509_certificates(data))
    cas = [c for c in intermediates if _is_ca(c)]
    store = TrustStore(list(anchors), [], cas)
    for crl in crls:
        if any(_crl_signed_by(crl, ca) for ca in [*anchors, *cas]):
            store.add_crl(crl)
    return store


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _renewal_gap(files: dict[str, bytes], n: int, prior: TokenInfo, made: dt.datetime) -> str | None:
    """What renewal n lacks to prove that archive timestamp n-1 still stood when n was made
    (None: nothing): for every CA on that token's chain, a CRL it signed, issued after that
    token and still current then. A CRL there that revokes the chain by then is INVALID."""
    if _index_name(n) not in files:
        return f"archive timestamp {n} was added without validation data"
    prefix = f"archive/{n:04d}/crls/"
    crls = [x509.load_pem_x509_crl(blob) for name, blob in files.items() if name.startswith(prefix)]
    for link, issuer in zip(prior.chain, prior.chain[1:], strict=False):
        fresh = [c for c in crls if _crl_signed_by(c, issuer) and c.last_update_utc >= prior.gen_time - CLOCK_SKEW
                 and (c.next_update_utc is None or c.next_update_utc + CLOCK_SKEW >= made)]
        for crl in fresh:
            entry = crl.get_revoked_certificate_by_serial_number(link.serial_number)
            if entry is not None and entry.revocation_date_utc <= made:
                raise PkiError("certificate_revoked", f"renewal {n}'s CRL shows {_ca_name(link)} revoked on "
                                                      f"{entry.revocation_date_utc:%Y-%m-%d}, before it was made")
        if not fresh:
            return f"archive timestamp {n} carries no CRL of {_ca_name(issuer)} current on {made:%Y-%m-%d}"
    return None


def evaluate_archive(files: dict[str, bytes], trust: TrustStore, *, at: dt.datetime,
                     margin: dt.timedelta = RENEW_MARGIN) -> tuple[ArchiveStatus, list[str]]:
    """Judge a bundle's archive timestamps at `at` (ETSI EN 319 102-1 long-term validation):
    each must cover what it claims and have been valid when made; each renewal must carry
    the CRLs that show the timestamp before it still valid when the renewal was made (then
    that one is proven, and so on down to the manifest); the newest so proven must still be
    valid at `at`. A renewal without that data extends nothing: the timestamp before it
    must stand alone. Returns the status and what was checked (for the report)."""
    count = sum(1 for n in files if _ARCHIVE.match(n))
    if count == 0:
        return ArchiveStatus("INDETERMINATE", [], "no archive timestamp: renew to add one"), []
    tokens = [files[_token_name(k)] for k in range(1, count + 1)]
    infos: list[TokenInfo] = []
    for k, token in enumerate(tokens, 1):
        try:
            infos.append(verify_token(token, trust, data=archive_covered(files, k)))
        except PkiError as exc:
            return ArchiveStatus("INVALID", infos, f"archive timestamp {k}: [{exc.code}] {exc.message}"), []
    notes: list[str] = []
    live = max(1, sum(1 for i in infos if i.gen_time <= at))  # renewals made after `at` do not count then
    top = 1
    for k in range(1, live):
        made = infos[k].gen_time
        try:
            verify_token(tokens[k - 1], trust, data=archive_covered(files, k), at=made)
            gap = _renewal_gap(files, k + 1, infos[k - 1], made)
        except PkiError as exc:
            if exc.code != "certificate_expired":
                return ArchiveStatus("INVALID", infos, f"archive timestamp {k} on {made:%Y-%m-%d}: "
                                                       f"[{exc.code}] {exc.message}"), notes
            gap = f"archive timestamp {k + 1} was added after timestamp {k} had expired"
        if gap is not None:
            notes.append(f"{gap}: it extends nothing (timestamp {k} must stand alone)")
            break
        top = k + 1
        notes.append(f"renewal {k + 1} ({made:%Y-%m-%d}): archive timestamp {k} was valid then, "
                     "by the CRLs the renewal carries")
    name = "the newest archive timestamp" if top == count else f"archive timestamp {top}"
    try:
        info = verify_token(tokens[top - 1], trust, data=archive_covered(files, top), at=at)
    except PkiError as exc:
        if exc.code == "certificate_expired":
            return ArchiveStatus("INDETERMINATE", infos, f"{name} no longer proves existence on {at:%Y-%m-%d}: "
                                 f"renew the evidence ({exc.message})"), notes
        return ArchiveStatus("INVALID", infos, f"archive timestamp {top}: [{exc.code}] {exc.message}"), notes
    expires = min(c.not_valid_after_utc for c in info.chain)
    if expires - at < margin:
        return ArchiveStatus("RENEWAL_DUE", infos, f"{name} expires on {expires:%Y-%m-%d}: renew soon",
                             expires), notes
    return ArchiveStatus("VALID", infos, f"protected until {expires:%Y-%m-%d}", expires), notes


def archive_status(data: bytes, anchors: Sequence[x509.Certificate], *, at: dt.datetime | None = None) -> ArchiveStatus:
    """The archive timestamps alone, judged at `at` (default now): is a renewal due? Cheap
    beside `verify` (no evidence is read), for sweeping an archive of bundles."""
    when = at or dt.datetime.now(dt.UTC)
    try:
        files = read_files(data)
        if MANIFEST not in files:
            raise DocexError("evidence_invalid", "the bundle has no MANIFEST.json")
        return evaluate_archive(files, _trust(files, anchors), at=when)[0]
    except PkiError as exc:
        return ArchiveStatus("INVALID", [], f"[{exc.code}] {exc.message}")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return ArchiveStatus("INVALID", [], f"the bundle is damaged: {type(exc).__name__}")


def verify(data: bytes, anchors: Sequence[x509.Certificate], *, at: dt.datetime | None = None) -> BundleReport:
    """Check a bundle offline: every byte accounted for, every signature and timestamp,
    chains and revocation as of each event's time, one envelope digest throughout, the
    audit entries up to a signed checkpoint, and the archive timestamps at `at`."""
    report = BundleReport()
    try:
        _verify(data, anchors, at or dt.datetime.now(dt.UTC), report)
    except PkiError as exc:
        report.fail(exc.code, exc.message)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        report.fail("evidence_invalid", f"the bundle is damaged: {type(exc).__name__}")
    return report


def _verify(data: bytes, anchors: Sequence[x509.Certificate], at: dt.datetime, report: BundleReport) -> None:
    files = read_files(data)
    if MANIFEST not in files:
        raise DocexError("evidence_invalid", "the bundle has no MANIFEST.json")
    if _zip(files) != data:
        report.fail("evidence_invalid", "the bundle's container was altered (it is not the ZIP docex wrote)")
    manifest = json.loads(files[MANIFEST].decode("utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DocexError("evidence_invalid", "MANIFEST.json is not a docex evidence manifest")
    listed: dict[str, str] = manifest["files"]
    archive_names = sorted(n for n in files if _ARCHIVE.match(n))
    count = len(archive_names)
    if set(archive_names) != {_token_name(i) for i in range(1, count + 1)}:
        report.fail("evidence_invalid", "the archive timestamps are not numbered 0001, 0002, ...")
    renewal_files = {n for n in files if _RENEWAL_DATA.match(n) or _RENEWAL_INDEX.match(n)}
    for name in files:
        if name != MANIFEST and name not in listed and name not in archive_names and name not in renewal_files:
            report.fail("evidence_invalid", f"{name} is not listed in the manifest")
    for name in sorted(renewal_files):
        if not 2 <= int(name[8:12]) <= count:
            report.fail("evidence_invalid", f"{name} belongs to no renewal of this bundle")
    for n in range(2, count + 1):
        if _index_name(n) in files:
            if files[_index_name(n)] != _index(files, n):
                report.fail("evidence_invalid", f"the validation data of renewal {n} does not match its index")
        elif any(name.startswith(f"archive/{n:04d}/") for name in renewal_files):
            report.fail("evidence_invalid", f"archive/{n:04d}/ holds files without the index that lists them")
    for name, digest in listed.items():
        if name not in files:
            report.fail("evidence_invalid", f"{name} is listed in the manifest but missing")
        elif hashlib.sha256(files[name]).hexdigest() != digest:
            report.fail("evidence_invalid", f"{name} was changed after the bundle was sealed")
    report.checks.append(f"{len(listed)} files match the manifest")
    report.message_id = str(manifest.get("message_id", ""))
    report.exported_by = str(manifest.get("exported_by", ""))
    trust = _trust(files, anchors)

    # Archive timestamps: the bundle as a whole, at the evaluation date.
    status, notes = evaluate_archive(files, trust, at=at)
    report.archive = {"status": status.status, "message": status.message,
                      "expires": status.expires.isoformat() if status.expires else None,
                      "timestamps": [t.gen_time.isoformat() for t in status.tokens]}
    report.checks.extend(notes)
    if status.status == "INVALID":
        report.fail("timestamp_invalid", status.message)
    elif status.status == "INDETERMINATE":
        report.ok = False
        if report.status != "INVALID":
            report.status = "INDETERMINATE"
        report.problems.append({"code": "renewal_needed", "message": status.message})
    elif status.status == "RENEWAL_DUE" and report.status == "VALID":
        report.status = "RENEWAL_DUE"
    else:
        report.checks.append(f"archive timestamp(s) valid on {at:%Y-%m-%d}: {status.message}")

    # The envelope and the evidences, each checked as of its own trusted time.
    envelope = files["envelope.p7m"]
    digest = hashlib.sha256(envelope).hexdigest()
    report.envelope_sha256 = digest
    if manifest.get("envelope_sha256") != digest:
        report.fail("evidence_invalid", "the manifest names another envelope")
    evidences: list[ev.Evidence] = []
    for name in sorted(n for n in files if n.startswith("evidence/") and n.endswith(".p7s")):
        der = files[name]
        try:
            e = ev.read_evidence(der, trust)
        except PkiError as exc:
            report.fail(exc.code, f"{name}: {exc.message}")
            continue
        stem = name[: -len(".p7s")]
        if files.get(f"{stem}.tsr") != signature_timestamp(der) or files.get(f"{stem}.sig") != signature_value(der):
            report.fail("evidence_invalid", f"{stem}.tsr/.sig do not match the evidence's own timestamp")
        if e.envelope_sha256 != digest:
            report.fail("evidence_invalid", f"{name} names another envelope ({e.envelope_sha256[:16]}…)")
        if e.message_id != report.message_id:
            report.fail("evidence_invalid", f"{name} is about another document ({e.message_id})")
        evidences.append(e)
    report.checks.append(f"{len(evidences)} evidence(s): signatures, timestamps, chains and revocation verified")
    first_time = min((e.at for e in evidences if e.at is not None), default=None)
    outer = cms.verify(envelope, trust, role=CertRole.SEAL, at=first_time)
    header = RoutingHeader.from_json(outer.attributes.get("docex_routing_header", b"{}"))
    if address_of(outer.signer) != header.sender or header.message_id != report.message_id:
        report.fail("evidence_invalid", "the envelope's header does not match its signer or the bundle")
    report.doc_number, report.title, report.sender = header.doc_number, header.title, header.sender
    report.checks.append(f"envelope signed by {header.sender}, digest {digest[:16]}…")
    if "inner.p7m" in files:
        inner = cms.verify(files["inner.p7m"], trust, role=CertRole.SEAL, at=first_time)
        from docex.protocols import package as pkg

        content = pkg.read(inner.content)
        if address_of(inner.signer) != header.sender or content.manifest.message_id != header.message_id:
            report.fail("evidence_invalid", "the inner package is not this document's, or not its sender's")
        else:
            report.checks.append(f"inner package signed by {header.sender}: {len(content.files)} file(s)")
    _verify_audit(files, trust, report, digest)
    report.timeline = timeline_rows(evidences)


def _verify_audit(files: dict[str, bytes], trust: TrustStore, report: BundleReport, digest: str) -> None:
    if "audit/entries.jsonl" not in files:
        return
    if "audit/checkpoint.p7s" not in files:
        report.fail("evidence_invalid", "audit entries without the checkpoint that covers them")
        return
    hub = str(unverified_payload(files["audit/checkpoint.p7s"]).get("hub", ""))
    cp, stamped = read_checkpoint(files["audit/checkpoint.p7s"], trust, hub=hub)
    if stamped is None:
        report.fail("timestamp_missing", "the audit checkpoint carries no timestamp")
    entries = [json.loads(line) for line in files["audit/entries.jsonl"].decode("utf-8").splitlines() if line]
    prev_id, prev_hash = None, None
    mine = 0
    for e in entries:
        at = dt.datetime.fromisoformat(e["at"])
        if entry_hash(e["prev_hash"], at, e["actor"], e["action"], e["subject"], e["detail"]) != e["hash"]:
            report.fail("audit_invalid", f"audit entry {e['id']} does not match its hash")
            return
        if prev_id is not None and (e["id"] != prev_id + 1 or e["prev_hash"] != prev_hash):
            report.fail("audit_invalid", f"audit entry {e['id']} does not follow entry {prev_id}")
            return
        prev_id, prev_hash = e["id"], e["hash"]
        if e["subject"] == report.message_id:
            mine += 1
            detail = json.loads(e["detail"])
            if e["action"] == "document.accept" and detail.get("digest") not in (None, digest):
                report.fail("audit_invalid", "the hub's audit names another envelope digest")
    if not entries or prev_id != cp.last_id or prev_hash != cp.head:
        report.fail("audit_invalid", f"the audit entries do not end at the head of checkpoint {cp.seq}")
        return
    report.checks.append(f"{mine} audit entr(ies) of {hub} for this document, chained to checkpoint {cp.seq} "
                         f"(signed{', timestamped ' + stamped.isoformat() if stamped else ''})")
