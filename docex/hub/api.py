"""The hub's read API (FastAPI, documented at /docs): the information centre's delivery
dashboard and any script read the hub through it, never through its tables.

Read-only, behind a login: staff accounts live in the hub config as PBKDF2 hashes
(`docex hub user add`). The browser gets an HMAC-signed session cookie from POST /login;
scripts may use HTTP Basic."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from docex.hub.context import HubContext
from docex.hub.links import status as link_status
from docex.hub.status import dashboard_links
from docex.hub.tracking import (
    DocumentQuery,
    document_detail,
    list_documents,
    overview,
    stats_dicts,
    unit_stats,
)

SESSION_COOKIE = "docex_session"
SESSION_SECONDS = 12 * 3600
PBKDF2_ROUNDS = 200_000
DASHBOARD = Path(__file__).resolve().parent.parent / "monitoring" / "dashboard"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${PBKDF2_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, rounds, salt, digest = stored.split("$")
        candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(rounds))
        return hmac.compare_digest(candidate, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def _secret(ctx: HubContext) -> bytes:
    path = ctx.config.home / "api.secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def _sign(secret: bytes, user: str, expires: int) -> str:
    payload = f"{user}|{expires}"
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(f"{payload}|{mac}".encode()).decode()


def _verify(secret: bytes, token: str) -> str | None:
    try:
        user, expires, mac = base64.urlsafe_b64decode(token.encode()).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        return None
    good = hmac.new(secret, f"{user}|{expires}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, mac) or int(expires) < time.time():
        return None
    return user


def _load_tsa(ctx: HubContext) -> Any:
    folder = ctx.config.home / "tsa"
    if not (folder / "tsa.crt").exists():
        return None
    from docex.pki.tsa import TimeStampAuthority

    return TimeStampAuthority.load(folder, ctx.config.keys.passphrase())


def create_app(ctx: HubContext) -> FastAPI:
    app = FastAPI(title="docex hub read API", version="1", description="电子公文交换 · 信息中心只读接口")
    secret = _secret(ctx)
    users = ctx.config.api.users
    online = ctx.config.limits.heartbeat_online_seconds

    def current_user(request: Request) -> str:
        token = request.cookies.get(SESSION_COOKIE)
        if token and (user := _verify(secret, token)):
            return user
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                name, password = "", ""
            if name in users and check_password(password, users[name]):
                return name
        raise HTTPException(status_code=401, detail="login required / 请先登录")

    @app.post("/login", include_in_schema=False)
    def login(username: str = Form(...), password: str = Form(...)) -> RedirectResponse:
        if username not in users or not check_password(password, users[username]):
            return RedirectResponse("/?login_failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        token = _sign(secret, username, int(time.time()) + SESSION_SECONDS)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", max_age=SESSION_SECONDS)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> RedirectResponse:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/api/overview")
    def api_overview(user: str = Depends(current_user)) -> dict[str, Any]:
        link_rows = dashboard_links(link_status(ctx.config, ctx.db))
        with ctx.db.read() as s:
            return overview(s, online_seconds=online, links=link_rows)

    @app.get("/api/documents")
    def api_documents(
        q: str = "", sender: str = "", unit: str = "", state: str = "", date_from: dt.date | None = None,
        date_to: dt.date | None = None, limit: int = 100, user: str = Depends(current_user),
    ) -> dict[str, Any]:
        query = DocumentQuery(q=q, sender=sender, unit=unit, state=state, date_from=date_from, date_to=date_to, limit=limit)
        with ctx.db.read() as s:
            return {"items": list_documents(s, query)}

    @app.get("/api/documents/{message_id}")
    def api_document(message_id: str, user: str = Depends(current_user)) -> dict[str, Any]:
        with ctx.db.read() as s:
            detail = document_detail(s, message_id)
        if detail is None:
            raise HTTPException(status_code=404, detail="no such document / 无此公文")
        return detail

    @app.get("/api/units")
    def api_units(user: str = Depends(current_user)) -> dict[str, Any]:
        with ctx.db.read() as s:
            return {"items": stats_dicts(unit_stats(s, online_seconds=online))}

    @app.get("/api/units/{address}")
    def api_unit(address: str, user: str = Depends(current_user)) -> dict[str, Any]:
        with ctx.db.read() as s:
            for item in stats_dicts(unit_stats(s, online_seconds=online)):
                if item["address"] == address:
                    return item
        raise HTTPException(status_code=404, detail="no such unit / 无此单位")

    tsa = _load_tsa(ctx)

    @app.post("/tsa", include_in_schema=False)
    async def timestamp(request: Request) -> Response:
        """RFC 3161 over HTTP for the agents' seals (no login: a public service of the intranet)."""
        if tsa is None:
            raise HTTPException(status_code=404, detail="no time-stamping authority at this hub")
        body = await request.body()
        if len(body) > 64 * 1024:
            raise HTTPException(status_code=413, detail="request too large")
        return Response(tsa.respond(body), media_type="application/timestamp-reply")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")
    return app


class ApiServer:
    """uvicorn in a background thread, stoppable."""

    def __init__(self, ctx: HubContext, host: str, port: int) -> None:
        import threading

        import uvicorn

        self.config = uvicorn.Config(create_app(ctx), host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="docex-api", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
