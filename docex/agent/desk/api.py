"""The agent's local HTTP API (FastAPI, OpenAPI at /docs) and the clerks' desk on top of it.

The desk (static HTML/JS in ./static, no build step, nothing from the internet) is one
client; office (OA) systems are another. Authentication: a person's session (POST
/api/login with a registered personal certificate and its passphrase; an HttpOnly,
SameSite=Strict cookie plus an X-CSRF-Token header on every change) or
`Authorization: Bearer TOKEN` (`docex agent token`). Everything that comes in is hostile:
ids must be UUIDs, file names are looked up in the manifest, never joined from the request,
sizes are bounded, and errors answer with a named code."""

# No `from __future__ import annotations`: FastAPI must see the closure-local `Who` dependency.
import asyncio
import datetime as dt
import hmac
import json
import re
import sqlite3
import unicodedata
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.datastructures import UploadFile

from docex.agent import actions
from docex.agent.context import AgentContext
from docex.agent.desk import views
from docex.agent.desk.auth import Gate, Session, list_persons
from docex.agent.store import Action, Received
from docex.pki.errors import PkiError
from docex.protocols.errors import DocexError, describe
from docex.protocols.manifest import CLASSIFIED, PRIORITIES

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "docex_desk"
UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MessageId = Annotated[str, PathParam(pattern=UUID_RE, max_length=36)]
MAX_FILES = 20
MAX_META = 64 * 1024
MAX_JSON = 1024 * 1024
MAX_NAME = 120
STATUS = {"unknown_document": 404, "already_done": 409, "recalled": 409, "not_logged_in": 401, "login_failed": 401,
          "forbidden": 403, "too_large": 413, "unsafe_filename": 422, "bad_metadata": 422, "classified": 422,
          "unknown_recipient": 422, "recipient_disabled": 422, "no_recipients": 422, "bad_address": 422,
          "receipt_invalid": 422, "recall_invalid": 422}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                                "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
                                "form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class LoginIn(BaseModel):
    person: str = Field(max_length=64, pattern=r"^[0-9a-f]{1,64}$")
    passphrase: str = Field(max_length=1024)


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class SendMeta(BaseModel):
    to: list[str] = Field(min_length=1, max_length=500)
    cc: list[str] = Field(default_factory=list, max_length=500)
    title: str = Field(min_length=1, max_length=300)
    doc_number: str = Field(default="", max_length=120)
    priority: str = "平急"
    classification: str = Field(default="", max_length=20)


def safe_filename(name: str) -> str:
    """A file name from an upload, or refused: no folders, no control characters, no dot
    names, bounded length (what the envelope's own package check would refuse anyway)."""
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if (not base or base in (".", "..") or base.startswith(".") or len(base) > MAX_NAME
            or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in base)):
        raise DocexError("unsafe_filename", f"unsafe file name {name[:60]!r}")
    return base


def content_disposition(name: str, inline: bool) -> str:
    """RFC 6266 / RFC 5987: an ASCII fallback and the UTF-8 name."""
    ascii_name = re.sub(r'[^A-Za-z0-9._-]', "_", name) or "file"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _error(code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "message_zh": describe(code) or message,
                         "message_en": describe(code, "en") or message}, status_code=STATUS.get(code, 400))


def create_app(ctx: AgentContext, *, wake: Callable[[], None] = lambda: None) -> FastAPI:
    cfg = ctx.config.desk
    gate = Gate(ctx, session_seconds=cfg.session_hours * 3600)
    app = FastAPI(title=f"docex desk — {ctx.config.name}", version="1",
                  description="单位终端本地接口：收文、发文、签收、退回、撤销、通讯录。The unit agent's local API.")
    app.state.gate = gate
    # DNS rebinding: a page of another site re-pointed at 127.0.0.1 still names its own host.
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    hosts = ["*"] if cfg.host in ("0.0.0.0", "::", "") else sorted({"127.0.0.1", "localhost", "::1", "[::1]", cfg.host})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    @app.exception_handler(PkiError)
    async def _docex_error(_request: Request, exc: PkiError) -> JSONResponse:
        return _error(exc.code, exc.message)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        # Bodies are bounded before they are read: JSON calls are small; an upload says its size.
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            limit = ctx.config.max_envelope_bytes + MAX_META if request.url.path == "/api/send" else MAX_JSON
            if length is None and request.url.path == "/api/send":
                return _error("too_large", "an upload must give its Content-Length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                return _error("too_large", f"the request is over {limit} bytes")
        response: Response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if request.url.path in ("/docs", "/redoc"):  # Swagger UI's own inline script and CDN-free assets
            del response.headers["Content-Security-Policy"]
        return response

    # -- who is asking ---------------------------------------------------------------------------
    def who(request: Request) -> Session:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            session = gate.bearer(auth[7:].strip())
            if session is None:
                raise DocexError("not_logged_in", "unknown API token")
            return session
        session = gate.session(request.cookies.get(COOKIE, ""))
        if session is None:
            raise DocexError("not_logged_in", "log in with your personal certificate")
        if request.method not in ("GET", "HEAD"):
            # Cookie sessions: the CSRF token (not sent by other sites) and, when the browser
            # says where the request comes from, our own origin.
            if not hmac.compare_digest(request.headers.get("x-csrf-token", ""), session.csrf):
                raise DocexError("forbidden", "missing or wrong X-CSRF-Token")
            origin = request.headers.get("origin")
            if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
                raise DocexError("forbidden", "cross-origin request")
        return session

    Who = Annotated[Session, Depends(who)]

    def record(session: Session, action: str, message_id: str = "", detail: str = "") -> None:
        with ctx.store.session() as s:
            s.add(Action(actor=session.actor, serial=session.serial, action=action, message_id=message_id,
                         detail=detail[:500]))

    # -- login -----------------------------------------------------------------------------------
    @app.get("/api/persons", summary="Registered staff (for the login form)")
    def persons() -> dict[str, Any]:
        return {"unit": {"address": ctx.creds.address, "name": ctx.config.name},
                "persons": [{"id": p.id, "name": p.name} for p in list_persons(ctx.config.home)],
                "timezone": cfg.timezone, "notify": cfg.notify, "sound": cfg.sound}

    @app.post("/api/login", summary="Log in with a registered personal certificate and its passphrase")
    def login(body: LoginIn, request: Request) -> JSONResponse:
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise DocexError("forbidden", "cross-origin login")
        session = gate.login(body.person, body.passphrase)
        record(session, "login")
        response = JSONResponse({"name": session.actor, "serial": session.serial, "csrf": session.csrf,
                                 "unit": {"address": ctx.creds.address, "name": ctx.config.name}})
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=int(cfg.session_hours * 3600))
        return response

    @app.post("/api/logout")
    def logout(request: Request, session: Who) -> JSONResponse:
        gate.logout(request.cookies.get(COOKIE, ""))
        record(session, "logout")
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/api/me")
    def me(session: Who) -> dict[str, Any]:
        return {"name": session.actor, "serial": session.serial, "via": session.via, "csrf": session.csrf or None,
                "unit": {"address": ctx.creds.address, "name": ctx.config.name}}

    # -- 收文 --------------------------------------------------------------------------------------
    @app.get("/api/inbox", summary="Received documents, newest first (with every state, those awaiting trust first)")
    def inbox(session: Who, state: str = "", q: str = "") -> list[dict[str, Any]]:
        if state and state not in ("delivered", "signed_for", "returned", "recalled", "awaiting_trust"):
            raise DocexError("bad_metadata", "state is delivered, signed_for, returned, recalled or awaiting_trust")
        return views.inbox(ctx, state=state, q=q[:100])

    def _received(message_id: str) -> dict[str, Any]:
        doc = views.received_one(ctx, message_id.lower())
        if doc is None:
            raise DocexError("unknown_document", f"no received document {message_id}")
        return doc

    @app.get("/api/inbox/{message_id}", summary="One received document, with its files")
    def inbox_one(message_id: MessageId, session: Who) -> dict[str, Any]:
        # awaiting trust: its cover only, nothing to open or sign for yet
        doc = views.received_one(ctx, message_id.lower()) or views.awaiting_one(ctx, message_id.lower())
        if doc is None:
            raise DocexError("unknown_document", f"no received document {message_id}")
        return doc

    @app.get("/api/inbox/{message_id}/files/{name}", summary="Download (or, with inline=1, open) a file")
    def inbox_file(message_id: MessageId, name: str, session: Who, inline: bool = False) -> Response:
        doc = _received(message_id)
        entry = next((f for f in doc["files"] if f["name"] == name), None)
        if entry is None:
            raise DocexError("unknown_document", "no such file in this document")
        with ctx.store.session() as s:
            row = s.get(Received, doc["message_id"])
            assert row is not None
            folder = Path(row.path).resolve()
        path = (folder / entry["name"]).resolve()
        if path.parent != folder or not path.is_file():  # names came verified from the package; still
            raise DocexError("unknown_document", "the file is not there")
        pdf = entry["name"].lower().endswith(".pdf")
        media = "application/pdf" if pdf else "application/octet-stream"
        record(session, "download", doc["message_id"], entry["name"])
        from docex.agent.evidence import record_opened

        if record_opened(ctx, doc["message_id"], staff=session.staff):  # evidence: opened, by whom
            wake()
        return Response(path.read_bytes(), media_type=media,
                        headers={"Content-Disposition": content_disposition(entry["name"], inline and pdf)})

    @app.post("/api/inbox/{message_id}/sign-for", summary="签收: sign for it (signed with your certificate)")
    def sign_for(message_id: MessageId, session: Who) -> dict[str, Any]:
        actions.sign_for(ctx, message_id.lower(), staff=session.staff, actor=session.actor)
        wake()
        return _received(message_id)

    @app.post("/api/inbox/{message_id}/return", summary="退回: return it with a reason")
    def return_(message_id: MessageId, body: ReasonIn, session: Who) -> dict[str, Any]:
        actions.return_document(ctx, message_id.lower(), body.reason, staff=session.staff, actor=session.actor)
        wake()
        return _received(message_id)

    @app.get("/api/inbox/{message_id}/receipt.pdf", summary="The printable 签收单 (receipt slip)")
    def slip(message_id: MessageId, session: Who) -> Response:
        from docex.agent.desk.slip import receipt_slip

        doc = _received(message_id)
        with ctx.store.session() as s:
            row = s.get(Received, doc["message_id"])
            assert row is not None
            digest = row.envelope_sha256
            act = s.execute(select(Action).where(Action.message_id == doc["message_id"],
                                                 Action.action.in_(("signed_for", "returned")))
                            .order_by(Action.id.desc())).scalars().first()
        pdf = receipt_slip(doc, unit_name=ctx.config.name, envelope_sha256=digest,
                           signed_at=views.iso(act.at) if act else None, timezone=cfg.timezone)
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": content_disposition(f"签收单-{doc['doc_number'] or 'doc'}.pdf", True)})

    # -- 发文 --------------------------------------------------------------------------------------
    @app.post("/api/send", summary="发文: multipart, a `meta` JSON part and one `files` part per file")
    async def send(request: Request, session: Who) -> dict[str, Any]:
        limit = ctx.config.max_envelope_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit + MAX_META):
            raise DocexError("too_large", f"the upload is over {limit} bytes")
        form = await request.form(max_files=MAX_FILES, max_fields=5, max_part_size=MAX_META)
        try:
            raw_meta = form.get("meta")
            if not isinstance(raw_meta, str):
                raise DocexError("bad_metadata", "a `meta` part with JSON is required")
            try:
                meta = SendMeta.model_validate(json.loads(raw_meta))
            except ValueError as exc:
                raise DocexError("bad_metadata", f"meta: {str(exc)[:300]}") from exc
            if meta.classification in CLASSIFIED:
                raise DocexError("classified", f"{meta.classification}: classified documents cannot travel on this network")
            if meta.classification:
                raise DocexError("bad_metadata", "classification must be empty on this network")
            if meta.priority not in PRIORITIES:
                raise DocexError("bad_metadata", f"priority must be one of {'/'.join(PRIORITIES)}")
            files: dict[str, bytes] = {}
            total = 0
            for part in form.getlist("files"):
                if not isinstance(part, UploadFile):
                    raise DocexError("bad_metadata", "`files` parts must be files")
                name = safe_filename(part.filename or "")
                if name in files:
                    raise DocexError("unsafe_filename", f"two files named {name}")
                data = await part.read(limit + 1)
                total += len(data)
                if total > limit:
                    raise DocexError("too_large", f"the files are over {limit} bytes")
                files[name] = data
            if not files:
                raise DocexError("bad_metadata", "at least one file is required")
        finally:
            await form.close()
        from docex.agent.sending import Draft, queue_document

        draft = Draft(to=tuple(meta.to), cc=tuple(meta.cc), title=meta.title, doc_number=meta.doc_number,
                      priority=meta.priority, files=files)
        message_id = await asyncio.to_thread(queue_document, ctx, draft)
        record(session, "send", message_id, f"{meta.doc_number} {meta.title}")
        wake()
        return {"message_id": message_id}

    @app.post("/api/compose", summary="Lay out a 公文 (GB/T 9704) from a template (`seal: true`: with the unit's seal)")
    async def compose(request: Request, session: Who) -> Response:
        body = await request.body()
        if len(body) > MAX_META * 4:
            raise DocexError("too_large", "the text is too long")
        try:
            data = json.loads(body)
            text = str(data.pop("body"))
            seal = data.pop("seal", False) is True
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DocexError("bad_metadata", "JSON with the document fields and `body` is required") from exc
        from docex.documents.compose import compose as lay_out

        data.setdefault("issuer", ctx.config.name)
        data.setdefault("date", dt.date.today().isoformat())
        if data.get("classification"):
            raise DocexError("classified", "classified documents cannot travel on this network")
        pdf = await asyncio.to_thread(lay_out, data, text)
        if seal:  # the unit's electronic seal at the layout's seal field (署名/成文日期)
            from docex.agent.sealing import seal_pdf

            pdf = await asyncio.to_thread(seal_pdf, ctx, pdf)
        record(session, "compose", detail=f"{'sealed ' if seal else ''}{str(data.get('title', ''))[:200]}")
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": content_disposition("正文.pdf", True)})

    # -- 已发 --------------------------------------------------------------------------------------
    @app.get("/api/sent", summary="Sent documents, each recipient with its state, times, signer, reasons")
    def sent(session: Who) -> list[dict[str, Any]]:
        return views.sent(ctx)

    @app.get("/api/sent/{message_id}")
    def sent_one(message_id: MessageId, session: Who) -> dict[str, Any]:
        found = views.sent(ctx, message_id=message_id.lower())
        if not found:
            raise DocexError("unknown_document", f"no sent document {message_id}")
        return found[0]

    @app.post("/api/sent/{message_id}/recall", summary="撤销: recall a document not yet signed for")
    def recall(message_id: MessageId, body: ReasonIn, session: Who) -> dict[str, Any]:
        from docex.agent.recall import recall_document

        new = recall_document(ctx, message_id.lower(), body.reason, staff=session.staff, actor=session.actor)
        wake()
        return {"message_id": message_id.lower(), "recalled": True, "new": new}

    # -- 通讯录 -------------------------------------------------------------------------------------
    @app.get("/api/directory", summary="Every unit the directory knows; q matches name or address")
    def directory(session: Who, q: str = "") -> list[dict[str, Any]]:
        return views.directory(ctx, q[:100])

    # -- new documents -------------------------------------------------------------------------------
    @app.get("/api/events", summary="Server-sent events: `change` when anything moved, `document` per new arrival")
    async def events(request: Request, session: Who) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            seen = await asyncio.to_thread(_delivered_ids, ctx)
            watch = sqlite3.connect(str(ctx.config.home / "agent.db"), timeout=30, isolation_level=None,
                                    check_same_thread=False)
            try:
                version = watch.execute("PRAGMA data_version").fetchone()[0]
                yield "retry: 3000\nevent: hello\ndata: {}\n\n"
                idle = 0.0
                while not await request.is_disconnected():
                    await asyncio.sleep(1.0)
                    idle += 1.0
                    now = watch.execute("PRAGMA data_version").fetchone()[0]
                    if now != version:
                        version = now
                        idle = 0.0
                        current = await asyncio.to_thread(_delivered_ids, ctx)
                        for doc in await asyncio.to_thread(_new_docs, ctx, current - seen):
                            yield f"event: document\ndata: {json.dumps(doc, ensure_ascii=False)}\n\n"
                        seen |= current
                        yield "event: change\ndata: {}\n\n"
                    elif idle >= 15:
                        idle = 0.0
                        yield ": keep-alive\n\n"
            finally:
                watch.close()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- the desk ------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "not_logged_in", 403: "forbidden", 404: "unknown_document", 413: "too_large"}.get(
            exc.status_code, "bad_metadata")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code)

    return app


def _delivered_ids(ctx: AgentContext) -> set[str]:
    with ctx.store.session() as s:
        return set(s.execute(select(Received.message_id).where(Received.state == "delivered")).scalars())


def _new_docs(ctx: AgentContext, ids: set[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    with ctx.store.session() as s:
        rows = list(s.execute(select(Received).where(Received.message_id.in_(ids))).scalars())
    return [{"message_id": r.message_id, "title": r.title, "doc_number": r.doc_number, "priority": r.priority,
             "sender_name": views.unit_name(ctx, r.sender)} for r in rows]
