"""What keeps the read API's login safe: throttling and lockout, server-side sessions,
the same-origin check on the login and logout forms, and the headers every answer
carries.

Login policy (documented in the README):
- a user name is locked for LOCK_SECONDS after USER_FAILURES failed logins within
  WINDOW_SECONDS (whatever the client address: a slow distributed guess is caught too);
- a client address is blocked for LOCK_SECONDS after ADDRESS_FAILURES failed logins
  within WINDOW_SECONDS (whatever the user names: spraying many names is caught too);
- while locked or blocked, no password is checked at all (no oracle) and the answer is
  429 with Retry-After; a success clears the user's failures;
- an unknown user costs the same PBKDF2 as a known one (a dummy hash), so the time of
  the answer does not tell which names exist."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

WINDOW_SECONDS = 15 * 60
LOCK_SECONDS = 15 * 60
USER_FAILURES = 5
ADDRESS_FAILURES = 20

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from their CDN with an inline script.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; font-src 'self' https://fonts.gstatic.com; "
    "worker-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin: our own form posts keep their Origin (no-referrer would make it "null")
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def security_headers(path: str) -> dict[str, str]:
    docs = path.startswith(("/docs", "/redoc"))
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY}
    if path.startswith("/api/") or path in ("/login", "/logout"):
        headers["Cache-Control"] = "no-store"
    return headers


def same_origin(origin: str | None, referer: str | None, host: str | None, scheme: str) -> bool:
    """A form POST is ours when its Origin (or, lacking one, its Referer) is this server.
    A request with neither is refused: every browser sends Origin with a POST."""
    if not host:
        return False
    source = origin if origin and origin != "null" else referer
    if not source:
        return False
    parts = urlsplit(source)
    return parts.scheme == scheme and parts.netloc.lower() == host.lower()


class LoginGuard:
    """Counts failed logins per user and per client address; see the module docstring."""

    def __init__(self, *, window: float = WINDOW_SECONDS, lock: float = LOCK_SECONDS, user_failures: int = USER_FAILURES,
                 address_failures: int = ADDRESS_FAILURES, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.lock, self.user_failures, self.address_failures = window, lock, user_failures, address_failures
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._mutex = threading.Lock()

    @staticmethod
    def _keys(user: str, address: str) -> tuple[str, str]:
        return f"user:{user}", f"addr:{address}"

    def retry_after(self, user: str, address: str) -> int:
        """Seconds the user or the address is still locked for; 0 when free to try."""
        now = self._clock()
        with self._mutex:
            until = max(self._locked_until.get(k, 0.0) for k in self._keys(user, address))
        return int(until - now + 0.999) if until > now else 0

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        with self._mutex:
            for key, limit in zip(self._keys(user, address), (self.user_failures, self.address_failures), strict=True):
                times = self._failures.setdefault(key, deque())
                times.append(now)
                while times and times[0] <= now - self.window:
                    times.popleft()
                if len(times) >= limit:
                    self._locked_until[key] = now + self.lock
                    times.clear()
            if len(self._failures) > 100_000:  # bounded memory under a flood of names
                self._failures.clear()

    def succeeded(self, user: str) -> None:
        with self._mutex:
            self._failures.pop(f"user:{user}", None)


@dataclass(frozen=True)
class Session:
    user: str
    expires: float


class SessionStore:
    """Sessions live on the server: the cookie holds a random token, the store only its
    SHA-256. Logging out deletes it, so a copied cookie is worthless afterwards; a restart
    of the hub signs everybody out (it never brings a session back)."""

    def __init__(self, lifetime: float, *, clock: Callable[[], float] = time.time) -> None:
        self.lifetime, self._clock = lifetime, clock
        self._sessions: dict[str, Session] = {}
        self._mutex = threading.Lock()

    @staticmethod
    def _id(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def create(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._mutex:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            self._sessions[self._id(token)] = Session(user, now + self.lifetime)
        return token

    def user(self, token: str) -> str | None:
        with self._mutex:
            session = self._sessions.get(self._id(token))
        if session is None or session.expires <= self._clock():
            return None
        return session.user

    def end(self, token: str) -> None:
        with self._mutex:
            self._sessions.pop(self._id(token), None)

    def end_all(self, user: str) -> None:
        with self._mutex:
            self._sessions = {k: s for k, s in self._sessions.items() if s.user != user}
