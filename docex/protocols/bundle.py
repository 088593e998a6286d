"""Evidence bundles: everything a third party needs to check one document's delivery
without our servers, years later (`docex evidence export / verify / renew`).

    MANIFEST.json          what is in the bundle: SHA-256 of every other file
    archive/0001.tsr       RFC 3161 token over MANIFEST.json (renewals add 0002.tsr... each
                           over MANIFEST.json and every earlier archive token)
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
from cryptography.hazmat.primitives import serialization

from docex.pki import cms
from docex.pki.errors import PkiError
from docex.pki.names import CertRole, address_of
from docex.pki.timestamps import (
    ArchiveStatus,
    Stamper,
    archive_input,
    evaluate_archive,
    signature_timestamp,
    signature_value,
    token_time,
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
        from docex.pki.timestamps import TokenInfo

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


def renew(data: bytes, stamper: Stamper) -> bytes:
    """The bundle with one more archive timestamp over its manifest and every earlier
    archive token (ETSI EN 319 102-1 style renewal); nothing else changes."""
    files = read_files(data)
    if MANIFEST not in files:
        raise DocexError("evidence_invalid", "the bundle has no MANIFEST.json")
    tokens = [files[n] for n in sorted(n for n in files if _ARCHIVE.match(n))]
    covered = archive_input(files[MANIFEST], tokens)
    files[f"archive/{len(tokens) + 1:04d}.tsr"] = stamper(hashlib.sha256(covered).digest())
    return _zip(files)


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
    crls = []
    intermediates = []
    for name, data in files.items():
        if name.startswith("crls/"):
            crls.append(x509.load_pem_x509_crl(data))
        elif name.startswith("certs/"):
            intermediates.extend(x509.load_pem_x509_certificates(data))
    store = TrustStore(list(anchors), [], [c for c in intermediates if c.extensions and _is_ca(c)])
    for crl in crls:
        store.add_crl(crl)
    return store


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


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
    expected = {f"archive/{i:04d}.tsr" for i in range(1, len(archive_names) + 1)}
    if set(archive_names) != expected:
        report.fail("evidence_invalid", "the archive timestamps are not numbered 0001, 0002, ...")
    for name in files:
        if name != MANIFEST and name not in listed and name not in archive_names:
            report.fail("evidence_invalid", f"{name} is not listed in the manifest")
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
    status: ArchiveStatus = evaluate_archive(files[MANIFEST], [files[n] for n in archive_names], trust, at=at)
    report.archive = {"status": status.status, "message": status.message,
                      "expires": status.expires.isoformat() if status.expires else None,
                      "timestamps": [t.gen_time.isoformat() for t in status.tokens]}
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
