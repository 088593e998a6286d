"""Sending: a document becomes an envelope in the local outbox, in one transaction with
the sender's record of it. The service publishes the outbox when the broker is there;
`docex send` works while the service is down."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from docex.agent.context import AgentContext
from docex.agent.evidence import keep_envelope
from docex.agent.store import Held, Outgoing, Sent, SentRecipient
from docex.pki.errors import PkiError
from docex.pki.recipients import usable_for_encryption
from docex.protocols import envelope, messages
from docex.protocols.address import check_address, is_under
from docex.protocols.directory import UnitEntry, no_hub_knows
from docex.protocols.errors import DocexError
from docex.protocols.manifest import Manifest, new_message_id

log = logging.getLogger(__name__)
WAITING = "waiting_for_directory"


@dataclass(frozen=True)
class Draft:
    to: tuple[str, ...]
    title: str
    doc_number: str
    files: Mapping[str, bytes]
    cc: tuple[str, ...] = ()
    priority: str = "平急"
    classification: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    message_id: str = field(default_factory=new_message_id)


def _main_document(files: Mapping[str, bytes]) -> str | None:
    return next((name for name in files if name.lower().endswith(".pdf")), None)


def _encryption_certificate(ctx: AgentContext, address: str, entry: UnitEntry) -> x509.Certificate:
    """The recipient's encryption certificate, if one may still be encrypted to: the hub
    lists none for a revoked or expired one, and our current CRLs may know of it sooner."""
    if not entry.enc_cert:
        raise DocexError("certificate_revoked", f"{address} ({entry.name}) has no valid encryption certificate "
                                                "(revoked or expired): ask the information centre")
    cert = entry.enc_certificate()
    code = usable_for_encryption(cert, ctx.trust)
    if code is not None:
        raise DocexError(code, f"the encryption certificate of {address} ({entry.name}) is "
                               f"{'revoked' if code == 'certificate_revoked' else 'expired'}")
    return cert


def seal_if_configured(ctx: AgentContext, name: str | None, files: dict[str, bytes]) -> None:
    """Seal the main PDF with the unit's electronic seal when the unit's config says so;
    once: a PDF already sealed by this unit (the desk's layout with the seal) goes as it is."""
    if not ctx.config.seal.auto or name is None:
        return
    from docex.agent.sealing import seal_pdf, sealed_by_this_unit

    if sealed_by_this_unit(ctx, files[name]):
        return
    files[name] = seal_pdf(ctx, files[name])


def suggestions(ctx: AgentContext, text: str, limit: int = 3) -> list[UnitEntry]:
    """Units whose address ends with `text` as a last part, or whose name holds it."""
    needle = text.lower()
    found = [u for u in ctx.units() if u.address.lower().endswith("." + needle.split(".")[-1]) or needle in u.name.lower()]
    return sorted(found, key=lambda u: u.address)[:limit]


def refuse_unknown(ctx: AgentContext, address: str) -> None:
    """An address inside the network that no directory knows is a typo, not a paper route:
    a bare `zfb`, or anything under a prefix whose signed directory this agent holds (its
    own county's; another county's once the hub passes that directory on over a link)."""
    known = [ctx.config.hub_prefix, *ctx.directory_prefixes()]
    if "." in address and not any(is_under(address, prefix) for prefix in known):
        return  # outside what this network knows: the hub answers paper_route
    hint = ", ".join(f"{u.address}（{u.name}）" for u in suggestions(ctx, address))
    raise DocexError("unknown_recipient", f"no unit {address} in the directory"
                     + (f"; did you mean {hint}?" if hint else "; see `docex directory --home AGENTDIR`"))


def paper_route(ctx: AgentContext, addresses: tuple[str, ...]) -> list[str]:
    """The recipients that will get the document on paper (outside the network)."""
    off = []
    for address in dict.fromkeys(addresses):
        check_address(address)
        if ctx.lookup(address) is None:
            refuse_unknown(ctx, address)
            off.append(address)
    return off


@dataclass
class _Resolved:
    certs: list[x509.Certificate] = field(default_factory=list)
    off_network: set[str] = field(default_factory=set)  # no hub knows them: the hub answers paper route
    unknown: list[str] = field(default_factory=list)  # not in our directory yet


def _resolve(ctx: AgentContext, recipients: Sequence[str], paper: frozenset[str] = frozenset()) -> _Resolved:
    out = _Resolved()
    for address in recipients:
        check_address(address)
        if address in paper:
            out.off_network.add(address)
            continue
        entry = ctx.lookup(address)
        if entry is None:
            refuse_unknown(ctx, address)  # a typo inside what the network knows: refused now
            if no_hub_knows(ctx.directories(), address):
                out.off_network.add(address)
            else:
                out.unknown.append(address)
            continue
        if entry.state != "enabled":
            raise DocexError("recipient_disabled", f"{address} ({entry.name}) is disabled")
        out.certs.append(_encryption_certificate(ctx, address, entry))
    return out


def queue_document(ctx: AgentContext, draft: Draft) -> str:
    """Validate, seal (if configured), pack and store in the outbox. Returns the message id.
    A recipient our directory does not know yet (another hub's unit whose directory has
    not reached us) holds the document unpacked, `waiting_for_directory`: it is never
    encrypted to fewer recipients than it names. The hub is asked at once; it answers
    paper route for an address no hub knows."""
    recipients = tuple(dict.fromkeys((*draft.to, *draft.cc)))
    resolved = _resolve(ctx, recipients)
    if resolved.unknown:
        _hold(ctx, draft, recipients, resolved.unknown)
        return draft.message_id
    data, inner = _pack(ctx, draft, resolved)
    with ctx.store.session() as s:
        s.add(Outgoing(kind=messages.DOCUMENT, message_id=draft.message_id, body=data))
        keep_envelope(s, message_id=draft.message_id, role="sent", envelope=data, inner=inner)
        s.add(Sent(message_id=draft.message_id, title=draft.title, doc_number=draft.doc_number, priority=draft.priority))
        for address in recipients:
            s.add(SentRecipient(message_id=draft.message_id, recipient=address, state="queued"))
    log.info("queued %s %s for %d recipient(s)", draft.message_id, draft.doc_number, len(recipients))
    return draft.message_id


def sealed_manifest(ctx: AgentContext, draft: Draft) -> tuple[Manifest, dict[str, bytes], str | None]:
    """The draft's manifest and files, the main document sealed where the unit seals: what
    both an ordinary envelope and a large document's small envelope carry."""
    files = dict(draft.files)
    main = _main_document(files)
    seal_if_configured(ctx, main, files)
    manifest = Manifest(
        message_id=draft.message_id, sender=ctx.creds.address, recipients=draft.to, cc=draft.cc,
        title=draft.title, doc_number=draft.doc_number, priority=draft.priority,
        classification=draft.classification, fields=dict(draft.fields),
    )
    return manifest, files, main


@dataclass(frozen=True)
class Resend:
    """A document sent again under a fresh id (repack_squatted): the same signed content,
    for the recipients its first id did not reach."""

    old_id: str
    message_id: str
    recipients: tuple[str, ...]
    title: str
    doc_number: str
    priority: str
    envelope: bytes
    inner: bytes


def repack_squatted(ctx: AgentContext, message_id: str, recipients: Sequence[str]) -> Resend | None:
    """Another unit used this document's id before us (the hub keeps one document per id,
    whoever sends it, and refused ours `duplicate`): pack what we signed, unchanged (files,
    seals, title, number, fields), again under a new random id for `recipients`, so that
    the squatter cannot stop our document. None when it cannot be (no kept copy, a large
    document's chunks, a recipient no longer reachable): the state stays `duplicate` and
    the sender sends it again by hand."""
    from docex.agent.store import KeptEnvelope
    from docex.pki import cms
    from docex.pki.names import CertRole
    from docex.protocols import package as pkg
    from docex.protocols.chunks import CHUNKS_NAME
    from docex.protocols.manifest import utcnow_iso

    with ctx.store.session() as s:
        kept = s.get(KeptEnvelope, message_id)
        inner = kept.inner if kept is not None and kept.role == "sent" else None
    if not inner or not recipients:
        return None
    try:
        signed = cms.verify(inner, ctx.trust, role=CertRole.SEAL)
        old = pkg.read(signed.content)
        if old.manifest.sender != ctx.creds.address or old.manifest.message_id != message_id \
                or CHUNKS_NAME in old.files:
            return None
        wanted = set(recipients)
        to = tuple(a for a in old.manifest.recipients if a in wanted)
        cc = tuple(a for a in old.manifest.cc if a in wanted and a not in to)
        if not to:  # only copies were refused: they become the main recipients of the new one
            to, cc = cc, ()
        if not to:
            return None
        resolved = _resolve(ctx, (*to, *cc))
        if resolved.unknown:
            return None
        manifest = replace(old.manifest, message_id=new_message_id(), recipients=to, cc=cc, created_at=utcnow_iso(),
                           files=())
        main = next((f.name for f in old.manifest.files if f.role == "document"), None)
        data, new_inner = envelope.pack_layers(manifest, old.files, ctx.creds, resolved.certs, main_document=main,
                                               off_network=frozenset(resolved.off_network))
    except PkiError as exc:
        log.warning("%s cannot be sent again under a new id: [%s] %s", message_id, exc.code, exc.message)
        return None
    if len(data) > ctx.config.max_envelope_bytes:
        return None
    return Resend(old_id=message_id, message_id=manifest.message_id, recipients=(*to, *cc), title=manifest.title,
                  doc_number=manifest.doc_number, priority=manifest.priority, envelope=data, inner=new_inner)


def record_resend(s: Session, resend: Resend) -> None:
    """Queue a Resend in the outbox, in the caller's transaction."""
    s.add(Outgoing(kind=messages.DOCUMENT, message_id=resend.message_id, body=resend.envelope))
    keep_envelope(s, message_id=resend.message_id, role="sent", envelope=resend.envelope, inner=resend.inner)
    s.add(Sent(message_id=resend.message_id, title=resend.title, doc_number=resend.doc_number,
               priority=resend.priority))
    for address in resend.recipients:
        s.add(SentRecipient(message_id=resend.message_id, recipient=address, state="queued"))


def _pack(ctx: AgentContext, draft: Draft, resolved: _Resolved) -> tuple[bytes, bytes]:
    manifest, files, main = sealed_manifest(ctx, draft)
    data, inner = envelope.pack_layers(manifest, files, ctx.creds, resolved.certs, main_document=main,
                                       off_network=frozenset(resolved.off_network))
    if len(data) > ctx.config.max_envelope_bytes:
        raise DocexError("too_large", f"the envelope is {len(data)} bytes, over {ctx.config.max_envelope_bytes}")
    return data, inner


def _draft_json(draft: Draft) -> bytes:
    return json.dumps({"to": list(draft.to), "cc": list(draft.cc), "title": draft.title, "doc_number": draft.doc_number,
                       "priority": draft.priority, "classification": draft.classification, "fields": dict(draft.fields),
                       "message_id": draft.message_id,
                       "files": {n: base64.b64encode(b).decode() for n, b in draft.files.items()}},
                      ensure_ascii=False).encode()


def _draft_of(data: bytes) -> Draft:
    d = json.loads(data)
    return Draft(to=tuple(d["to"]), cc=tuple(d["cc"]), title=d["title"], doc_number=d["doc_number"],
                 priority=d["priority"], classification=d["classification"], fields=d["fields"],
                 message_id=d["message_id"], files={n: base64.b64decode(b) for n, b in d["files"].items()})


def _hold(ctx: AgentContext, draft: Draft, recipients: Sequence[str], unknown: list[str]) -> None:
    lookup = json.dumps({"message_id": draft.message_id, "recipients": unknown}).encode()
    with ctx.store.session() as s:
        s.add(Held(message_id=draft.message_id, draft=_draft_json(draft)))
        s.add(Sent(message_id=draft.message_id, title=draft.title, doc_number=draft.doc_number, priority=draft.priority,
                   state=WAITING))
        for address in recipients:
            s.add(SentRecipient(message_id=draft.message_id, recipient=address, state=WAITING))
        s.add(Outgoing(kind=messages.DIRECTORY_REQUEST, message_id=f"{messages.DIRECTORY_REQUEST}|{draft.message_id}",
                       body=lookup))
    log.info("holding %s %s: %s not in the directory yet (waiting for directory)", draft.message_id, draft.doc_number,
             ", ".join(unknown))


def release_held(ctx: AgentContext) -> int:
    """Pack and queue every held document whose recipients are all known now (or answered
    paper route by the hub). Returns how many were released."""
    with ctx.store.session() as s:
        held = [(h.message_id, h.draft) for h in s.execute(select(Held)).scalars()]
    released = 0
    for message_id, data in held:
        draft = _draft_of(data)
        recipients = tuple(dict.fromkeys((*draft.to, *draft.cc)))
        with ctx.store.session() as s:
            rows = {r.recipient: r.state for r in s.execute(
                select(SentRecipient).where(SentRecipient.message_id == message_id)).scalars()}
        paper = frozenset(a for a, state in rows.items() if state == "paper_route")
        try:
            resolved = _resolve(ctx, recipients, paper)
            if resolved.unknown:
                continue  # still waiting for the directory, or for the hub's answer
            # Paper-route recipients stay in the header: the hub records and notices them.
            body = _pack(ctx, draft, resolved)
        except DocexError as exc:
            _give_up(ctx, message_id, exc)
            continue
        with ctx.store.session() as s:
            row = s.get(Held, message_id)
            if row is None:
                continue  # released by another process meanwhile
            s.delete(row)
            if body is not None:
                s.add(Outgoing(kind=messages.DOCUMENT, message_id=message_id, body=body[0]))
                keep_envelope(s, message_id=message_id, role="sent", envelope=body[0], inner=body[1])
                s.execute(update(Sent).where(Sent.message_id == message_id).values(state="queued"))
                s.execute(update(SentRecipient).where(SentRecipient.message_id == message_id,
                                                      SentRecipient.state == WAITING).values(state="queued"))
            else:
                s.execute(update(Sent).where(Sent.message_id == message_id).values(state="paper_route"))
        released += 1
        log.info("released %s: %s", message_id, "queued" if body is not None else "every recipient on paper")
    return released


def _give_up(ctx: AgentContext, message_id: str, exc: PkiError) -> None:
    """A held document that can no longer go (a recipient was disabled meanwhile...)."""
    with ctx.store.session() as s:
        row = s.get(Held, message_id)
        if row is not None:
            s.delete(row)
        s.execute(update(Sent).where(Sent.message_id == message_id).values(state="rejected"))
        s.execute(update(SentRecipient).where(SentRecipient.message_id == message_id, SentRecipient.state == WAITING)
                  .values(state="rejected", code=exc.code, reason=exc.message))
    log.warning("held %s cannot be sent: [%s] %s", message_id, exc.code, exc.message)


def draft_from_sidecar(sidecar: Path) -> Draft:
    """An office system drops FILES and a JSON sidecar into AGENTDIR/outbox/:
    {"to": [...], "cc": [...], "title": ..., "doc_number": ..., "priority": ..., "files": [...]}"""
    try:
        meta = json.loads(sidecar.read_text("utf-8"))
        names: Sequence[str] = meta["files"]
        files = {}
        for name in names:
            path = sidecar.parent / name
            if path.parent != sidecar.parent:
                raise DocexError("unsafe_filename", f"{name} is not in the outbox folder")
            files[path.name] = path.read_bytes()
        return Draft(
            to=tuple(meta["to"]), cc=tuple(meta.get("cc", ())), title=str(meta["title"]),
            doc_number=str(meta.get("doc_number", "")), priority=str(meta.get("priority", "平急")),
            classification=str(meta.get("classification", "")), fields=dict(meta.get("fields", {})), files=files,
            message_id=str(meta.get("message_id") or new_message_id()),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DocexError("bad_metadata", f"{sidecar.name}: {exc}") from exc
