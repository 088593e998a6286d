"""Sending: a document becomes an envelope in the local outbox, in one transaction with
the sender's record of it. The service publishes the outbox when the broker is there;
`docex send` works while the service is down."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from docex.agent.context import AgentContext
from docex.agent.evidence import keep_envelope
from docex.agent.store import Outgoing, Sent, SentRecipient
from docex.pki.recipients import usable_for_encryption
from docex.protocols import envelope, messages
from docex.protocols.address import check_address, is_under
from docex.protocols.directory import UnitEntry
from docex.protocols.errors import DocexError
from docex.protocols.manifest import Manifest, new_message_id

log = logging.getLogger(__name__)


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
    """Seal the main PDF with the unit's electronic seal when the unit's config says so."""
    if not ctx.config.seal.auto or name is None:
        return
    from docex.agent.sealing import seal_pdf

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


def queue_document(ctx: AgentContext, draft: Draft) -> str:
    """Validate, seal (if configured), pack and store in the outbox. Returns the message id."""
    recipients = tuple(dict.fromkeys((*draft.to, *draft.cc)))
    certs = []
    off_network = set()
    for address in recipients:
        check_address(address)
        entry = ctx.lookup(address)
        if entry is None:
            refuse_unknown(ctx, address)
            off_network.add(address)  # the hub answers paper_route
            continue
        if entry.state != "enabled":
            raise DocexError("recipient_disabled", f"{address} ({entry.name}) is disabled")
        certs.append(_encryption_certificate(ctx, address, entry))
    files = dict(draft.files)
    main = _main_document(files)
    seal_if_configured(ctx, main, files)
    manifest = Manifest(
        message_id=draft.message_id, sender=ctx.creds.address, recipients=draft.to, cc=draft.cc,
        title=draft.title, doc_number=draft.doc_number, priority=draft.priority,
        classification=draft.classification, fields=dict(draft.fields),
    )
    data, inner = envelope.pack_layers(manifest, files, ctx.creds, certs, main_document=main,
                                       off_network=frozenset(off_network))
    if len(data) > ctx.config.max_envelope_bytes:
        raise DocexError("too_large", f"the envelope is {len(data)} bytes, over {ctx.config.max_envelope_bytes}")
    with ctx.store.session() as s:
        s.add(Outgoing(kind=messages.DOCUMENT, message_id=manifest.message_id, body=data))
        keep_envelope(s, message_id=manifest.message_id, role="sent", envelope=data, inner=inner)
        s.add(Sent(message_id=manifest.message_id, title=draft.title, doc_number=draft.doc_number, priority=draft.priority))
        for address in recipients:
            s.add(SentRecipient(message_id=manifest.message_id, recipient=address, state="queued"))
    log.info("queued %s %s for %d recipient(s)", manifest.message_id, draft.doc_number, len(recipients))
    return manifest.message_id


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
