"""What the desk and the API show: the agent's store and folders read into plain dicts,
with unit names from the directory rather than addresses, deadlines by priority, and the
received manifest's 主送/抄送. Times are ISO 8601 UTC; the browser shows them in the
desk's time zone."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import defer

from docex.agent.context import AgentContext
from docex.agent.store import (
    AwaitingTrust,
    Notice,
    Recall,
    Received,
    Sent,
    SentEvent,
    SentRecipient,
    awaiting_trust,
)
from docex.protocols.address import is_under

# Signing-for deadlines by priority, as the hub sets them by default (特急 4 h, 加急 24 h, 平急 72 h).
DEADLINE_HOURS = {"特急": 4.0, "加急": 24.0, "平急": 72.0}

# Directory kinds -> the groups clerks pick recipients by.
GROUPS = {
    "township": "乡镇", "government": "县直单位", "party": "党委部门", "people_org": "群团组织",
    "vertical": "垂直管理单位", "institution": "事业单位", "judicial": "政法机关", "congress": "人大",
    "cppcc": "政协", "county": "县直单位", "military": "人武部", "enterprise": "企业",
}


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def unit_name(ctx: AgentContext, address: str, cache: dict[str, str] | None = None) -> str:
    if cache is not None and address in cache:
        return cache[address]
    entry = ctx.lookup(address)
    name = entry.name if entry is not None else address
    if cache is not None:
        cache[address] = name
    return name


def _manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "manifest.json").read_text("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in manifest.get("files", []) or []:
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            out.append({"name": f["name"], "size": int(f.get("size", 0) or 0), "role": str(f.get("role", ""))})
    return out


def received_dict(ctx: AgentContext, doc: Received, *, reminders: int = 0, recall: Recall | None = None,
                  names: dict[str, str] | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    manifest = _manifest(Path(doc.path))
    received_at = _aware(doc.received_at)
    deadline = received_at + dt.timedelta(hours=DEADLINE_HOURS.get(doc.priority, 72.0))
    waiting = doc.state == "delivered"
    return {
        "message_id": doc.message_id,
        "sender": doc.sender,
        "sender_name": unit_name(ctx, doc.sender, names) if doc.sender else doc.sender_name,
        "title": doc.title,
        "doc_number": doc.doc_number,
        "priority": doc.priority,
        "to": [{"address": a, "name": unit_name(ctx, a, names)} for a in manifest.get("recipients", []) or []],
        "cc": [{"address": a, "name": unit_name(ctx, a, names)} for a in manifest.get("cc", []) or []],
        "received_at": iso(received_at),
        "deadline": iso(deadline),
        "overdue": waiting and now > deadline,
        "reminders": reminders,
        "state": doc.state,
        "seal": doc.seal_status,
        "person": doc.person,
        "reason": doc.reason,
        "recall": None if recall is None else {"reason": recall.reason, "person": recall.person,
                                               "at": iso(recall.at), "outcome": recall.outcome},
        "files": _files(manifest),
    }


def awaiting_dict(ctx: AgentContext, doc: AwaitingTrust, *, names: dict[str, str] | None = None) -> dict[str, Any]:
    """A document kept until its signer's CA is trusted here: not opened, so only its cover
    (as our hub routed it), and the sender's name once our directory knows the sender."""
    since = _aware(doc.since)
    name = unit_name(ctx, doc.sender, names) if doc.sender else ""
    return {
        "message_id": doc.message_id,
        "sender": doc.sender,
        "sender_name": doc.sender_name if name == doc.sender and doc.sender_name else name,
        "title": doc.title,
        "doc_number": doc.doc_number,
        "priority": doc.priority,
        "to": [], "cc": [],
        "received_at": iso(since),
        "deadline": None,
        "wait_until": iso(since + dt.timedelta(minutes=ctx.config.trust_wait_minutes)),
        "overdue": False,
        "reminders": 0,
        "state": "awaiting_trust",
        "seal": "unchecked",
        "person": "",
        "reason": "",
        "recall": None,
        "files": [],
    }


def inbox(ctx: AgentContext, *, state: str = "", q: str = "", limit: int = 500) -> list[dict[str, Any]]:
    """Received documents, newest first; with every state (or state=awaiting_trust), those
    kept until their signer's CA is trusted here come first."""
    with ctx.store.session() as s:
        waiting = list(reversed(awaiting_trust(s)))[:limit] if state in ("", "awaiting_trust") else []
        docs = []
        if state != "awaiting_trust":
            stmt = select(Received).order_by(Received.received_at.desc()).limit(limit)
            if state:
                stmt = stmt.where(Received.state == state)
            docs = list(s.execute(stmt).scalars())
        ids = [d.message_id for d in docs]
        reminders: dict[str, int] = {}
        for n in s.execute(select(Notice.message_id).where(Notice.message_id.in_(ids), Notice.event == "reminder")).scalars():
            reminders[n] = reminders.get(n, 0) + 1
        recalls = {r.message_id: r for r in s.execute(select(Recall).where(Recall.message_id.in_(ids),
                                                                          Recall.direction == "in")).scalars()}
    names: dict[str, str] = {}
    items = [awaiting_dict(ctx, w, names=names) for w in waiting]
    items += [received_dict(ctx, d, reminders=reminders.get(d.message_id, 0), recall=recalls.get(d.message_id),
                            names=names) for d in docs]
    if q:
        needle = q.strip().lower()
        items = [i for i in items if needle in f"{i['title']} {i['doc_number']} {i['sender_name']}".lower()]
    return items


def received_one(ctx: AgentContext, message_id: str) -> dict[str, Any] | None:
    with ctx.store.session() as s:
        doc = s.get(Received, message_id)
        if doc is None:
            return None
        reminders = len(s.execute(select(Notice.id).where(Notice.message_id == message_id,
                                                          Notice.event == "reminder")).all())
        recall = s.execute(select(Recall).where(Recall.message_id == message_id,
                                                Recall.direction == "in")).scalar_one_or_none()
    return received_dict(ctx, doc, reminders=reminders, recall=recall)


def awaiting_one(ctx: AgentContext, message_id: str) -> dict[str, Any] | None:
    with ctx.store.session() as s:
        doc = s.execute(select(AwaitingTrust).options(defer(AwaitingTrust.body))
                        .where(AwaitingTrust.message_id == message_id).limit(1)).scalar_one_or_none()
    return None if doc is None else awaiting_dict(ctx, doc)


def sent(ctx: AgentContext, *, limit: int = 300, message_id: str | None = None) -> list[dict[str, Any]]:
    with ctx.store.session() as s:
        stmt = select(Sent).order_by(Sent.created_at.desc()).limit(limit)
        if message_id is not None:
            stmt = select(Sent).where(Sent.message_id == message_id)
        docs = list(s.execute(stmt).scalars())
        ids = [d.message_id for d in docs]
        recips = list(s.execute(select(SentRecipient).where(SentRecipient.message_id.in_(ids))
                                .order_by(SentRecipient.id)).scalars())
        events = list(s.execute(select(SentEvent).where(SentEvent.message_id.in_(ids)).order_by(SentEvent.id)).scalars())
        recalls = {r.message_id: r for r in s.execute(select(Recall).where(Recall.message_id.in_(ids),
                                                                          Recall.direction == "out")).scalars()}
    names: dict[str, str] = {}
    by_doc: dict[str, list[SentRecipient]] = {}
    for r in recips:
        by_doc.setdefault(r.message_id, []).append(r)
    by_recipient: dict[tuple[str, str], list[SentEvent]] = {}
    for e in events:
        by_recipient.setdefault((e.message_id, e.recipient), []).append(e)
    out = []
    for d in docs:
        rows = []
        for r in by_doc.get(d.message_id, []):
            evs = by_recipient.get((d.message_id, r.recipient), [])
            signed = next((e for e in evs if e.event == "signed_for"), None)
            returned = next((e for e in evs if e.event == "returned"), None)
            rows.append({
                "address": r.recipient, "name": unit_name(ctx, r.recipient, names), "state": r.state,
                "at": iso(r.at), "reason": r.reason, "code": r.code,
                "delivered_at": next((iso(e.at) for e in evs if e.event == "delivered"), None),
                "signed_for_at": iso(signed.at) if signed else None, "signed_by": signed.person if signed else "",
                "returned_at": iso(returned.at) if returned else None,
                "return_reason": returned.reason if returned else "",
                "reminders": sum(1 for e in evs if e.event.startswith("reminder")),
                "events": [{"event": e.event.split("#")[0], "at": iso(e.at), "person": e.person, "reason": e.reason}
                           for e in evs],
            })
        recall = recalls.get(d.message_id)
        out.append({
            "message_id": d.message_id, "title": d.title, "doc_number": d.doc_number, "priority": d.priority,
            "created_at": iso(d.created_at), "state": d.state, "recipients": rows,
            "recall": None if recall is None else {"reason": recall.reason, "person": recall.person, "at": iso(recall.at)},
            "recallable": recall is None and any(r["state"] in ("queued", "sent", "routed", "waiting_for_link", "delivered")
                                                 for r in rows),
        })
    return out


def directory(ctx: AgentContext, q: str = "", limit: int = 1000) -> list[dict[str, Any]]:
    needle = q.strip().lower()
    home = ctx.config.hub_prefix
    parent = home.rsplit(".", 1)[0] if "." in home else ""
    out = []
    for u in sorted(ctx.units(), key=lambda u: (not is_under(u.address, home), u.kind != "county", u.address)):
        if needle and needle not in u.name.lower() and needle not in u.address.lower():
            continue
        local = is_under(u.address, home)
        if local:
            group = GROUPS.get(u.kind, "其他单位")
        elif parent and u.address.rsplit(".", 1)[0] == parent:
            group = "市直单位"  # directly under the city's prefix
        else:
            group = "外县（市）单位"
        out.append({"address": u.address, "name": u.name, "kind": u.kind, "group": group,
                    "state": u.state, "phase": u.phase, "local": local,
                    "self": u.address == ctx.creds.address})
        if len(out) >= limit:
            break
    return out
