"""The hub's read API (FastAPI, documented at /docs): the information centre's delivery
dashboard and any script read the hub through it, never through its tables.

Read-only, behind a login: staff accounts live in the hub config as PBKDF2 hashes
(`docex hub user add`). The browser gets a session cookie from POST /login (a random
token, the session kept on the server and ended by POST /logout); scripts may use HTTP
Basic. Logins are throttled and locked out, forms refuse cross-site posts, and every
answer carries CSP and the other security headers (see `api_security`)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from docex.hub.api_security import LoginGuard, SessionStore, same_origin, security_headers
from docex.hub.context import HubContext
from docex.hub.dead_letters import page as dead_letter_page
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
from docex.monitoring.webserver import ThreadedServer
from docex.pki.ratelimit import RateLimiter
from docex.pki.tsa import BURST_PER_CLIENT, RATE_PER_CLIENT, is_loopback

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


def _dummy_hash(users: dict[str, str]) -> str:
    """A hash of a random password with the rounds most users have: checking an unknown
    name against it costs what checking a known one costs."""
    rounds = [stored.split("$")[1] for stored in users.values() if stored.count("$") == 3]
    common = max(set(rounds), key=rounds.count) if rounds else str(PBKDF2_ROUNDS)
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", secrets.token_bytes(16), salt, int(common) if common.isdigit() else PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${common}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _load_tsa(ctx: HubContext) -> Any:
    folder = ctx.config.home / "tsa"
    if not (folder / "tsa.crt").exists():
        return None
    from docex.pki.tsa import TimeStampAuthority

    return TimeStampAuthority.load(folder, ctx.config.keys.passphrase())


def create_app(ctx: HubContext, *, guard: LoginGuard | None = None, tsa_limiter: RateLimiter | None = None) -> FastAPI:
    app = FastAPI(title="docex hub read API", version="1", description="电子公文交换 · 信息中心只读接口")
    users = ctx.config.api.users
    online = ctx.config.limits.heartbeat_online_seconds
    guard = guard or LoginGuard()
    sessions = SessionStore(SESSION_SECONDS)
    dummy = _dummy_hash(users)
    tsa_limit = tsa_limiter or RateLimiter(RATE_PER_CLIENT, BURST_PER_CLIENT)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in security_headers(request.url.path).items():
            response.headers.setdefault(name, value)
        return response

    def authenticate(name: str, password: str, address: str) -> str | None:
        """The user when the password is right; raises 429 while the name or the address
        is locked. Unknown names are checked against a dummy hash (same cost)."""
        wait = guard.retry_after(name, address)
        if wait:
            raise HTTPException(status_code=429, detail="too many failed logins, try later / 登录失败次数过多，请稍后再试",
                                headers={"Retry-After": str(wait)})
        ok = check_password(password, users.get(name, dummy)) and name in users
        if not ok:
            guard.failed(name, address)
            return None
        guard.succeeded(name)
        return name

    def current_user(request: Request) -> str:
        token = request.cookies.get(SESSION_COOKIE)
        if token and (user := sessions.user(token)) and user in users:
            return user
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                name, password = "", ""
            if user := authenticate(name, password, _client(request)):
                return user
        raise HTTPException(status_code=401, detail="login required / 请先登录")

    def refuse_cross_site(request: Request) -> None:
        host = request.headers.get("host")
        if not same_origin(request.headers.get("origin"), request.headers.get("referer"), host, request.url.scheme):
            raise HTTPException(status_code=403, detail="cross-site request refused / 拒绝跨站请求")

    @app.post("/login", include_in_schema=False)
    def login(request: Request, username: str = Form(...), password: str = Form(...)) -> RedirectResponse:
        refuse_cross_site(request)
        try:
            user = authenticate(username, password, _client(request))
        except HTTPException as exc:
            if exc.status_code != 429:
                raise
            # the browser's form: back to the page, which says to wait (the status says 429)
            return RedirectResponse("/?login_locked=1", status_code=303, headers=exc.headers)
        if user is None:
            return RedirectResponse("/?login_failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, sessions.create(user), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=SESSION_SECONDS, path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> RedirectResponse:
        refuse_cross_site(request)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            sessions.end(token)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.get("/api/overview")
    def api_overview(user: str = Depends(current_user)) -> dict[str, Any]:
        link_rows = dashboard_links(link_status(ctx.config, ctx.db))
        with ctx.db.read() as s:
            data = overview(s, online_seconds=online, links=link_rows)
        data["dead_letters"] = dead_letter_page(ctx.config, ctx.db, limit=1)["total"]
        return data

    @app.get("/api/dead-letters")
    def api_dead_letters(offset: int = 0, limit: int = 50, include_replayed: bool = Query(False, alias="all"),
                         user: str = Depends(current_user)) -> dict[str, Any]:
        """Dead letters, newest first, a page at a time (`docex hub dead-letters list`)."""
        return dead_letter_page(ctx.config, ctx.db, offset=offset, limit=limit, include_replayed=include_replayed)

    @app.get("/api/documents")
    def api_documents(
        q: str = "", sender: str = "", unit: str = "", state: str = "", date_from: dt.date | None = None,
        date_to: dt.date | None = None, limit: int = 100, pending: bool = False, overdue: bool = False,
        user: str = Depends(current_user),
    ) -> dict[str, Any]:
        query = DocumentQuery(q=q, sender=sender, unit=unit, state=state, date_from=date_from, date_to=date_to,
                              limit=limit, pending=pending, overdue=overdue)
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
        """RFC 3161 over HTTP for the agents' seals (no login: a public service of the intranet,
        rate-limited per client address)."""
        if tsa is None:
            raise HTTPException(status_code=404, detail="no time-stamping authority at this hub")
        if not tsa_limit.allow(_client(request)):
            raise HTTPException(status_code=429, detail="too many time-stamp requests / 时间戳请求过于频繁",
                                headers={"Retry-After": str(tsa_limit.retry_after(_client(request)))})
        body = await request.body()
        if len(body) > 64 * 1024:
            raise HTTPException(status_code=413, detail="request too large")
        return Response(tsa.respond(body), media_type="application/timestamp-reply")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    from docex.hub.enrollment_api import router as enrollment_router

    app.include_router(enrollment_router(ctx))  # terminals asking for their certificates
    app.mount("/", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")
    return app


class ApiServer(ThreadedServer):
    """The read API and dashboard, in a thread of the hub service."""

    def __init__(self, ctx: HubContext, host: str, port: int) -> None:
        # Plain HTTP only on a loopback address; anywhere else HTTPS with the hub's server certificate.
        tls: dict[str, Any] = {}
        if not is_loopback(host) or ctx.config.api.tls:
            passphrase = ctx.config.keys.passphrase()
            tls = {"ssl_certfile": str(ctx.config.hub_dir / "server.crt"),
                   "ssl_keyfile": str(ctx.config.hub_dir / "server.key"),
                   "ssl_keyfile_password": passphrase.decode() if passphrase else None}
        self.tls = bool(tls)
        super().__init__(create_app(ctx), host, port, name="docex-api", **tls)
