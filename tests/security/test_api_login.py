"""The read API's login against guessing: a user name is locked after 5 failures, a client
address after 20 (whatever names it tries), Basic auth counts the same, a lock answers 429
without checking any password, and an unknown name costs the same PBKDF2 as a known one."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from docex.hub import api
from docex.hub.api import create_app
from docex.hub.api_security import ADDRESS_FAILURES, USER_FAILURES, LoginGuard
from docex.hub.context import HubContext
from tests.security.conftest import FAST_ROUNDS, OTHER_STAFF, PASSWORD, STAFF

ORIGIN = {"origin": "http://testserver"}


def client(ctx: HubContext, host: str = "10.0.0.5", guard: LoginGuard | None = None) -> TestClient:
    return TestClient(create_app(ctx, guard=guard), client=(host, 40000), follow_redirects=False)


def login(c: TestClient, user: str, password: str) -> str:
    r = c.post("/login", data={"username": user, "password": password}, headers=ORIGIN)
    assert r.status_code == 303
    return r.headers["location"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_user_is_locked_after_repeated_failures_even_with_the_right_password(api_hub: HubContext) -> None:
    guard = LoginGuard()
    c = client(api_hub, guard=guard)
    for _ in range(USER_FAILURES):
        assert login(c, STAFF, "guess") == "/?login_failed=1"
    r = c.post("/login", data={"username": STAFF, "password": PASSWORD}, headers=ORIGIN)
    assert r.headers["location"] == "/?login_locked=1" and int(r.headers["retry-after"]) > 0
    assert "docex_session" not in r.cookies
    # from another address too (the lock is on the name), and through Basic auth: 429
    other = client(api_hub, "10.0.0.6", guard=guard)
    locked = other.get("/api/overview", headers=basic(STAFF, PASSWORD))
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    # another user is not affected
    assert login(other, OTHER_STAFF, PASSWORD) == "/"


def test_basic_auth_failures_count_towards_the_lock(api_hub: HubContext) -> None:
    c = client(api_hub)
    for _ in range(USER_FAILURES):
        assert c.get("/api/units", headers=basic(STAFF, "guess")).status_code == 401
    assert c.get("/api/units", headers=basic(STAFF, PASSWORD)).status_code == 429


def test_an_address_spraying_names_is_blocked(api_hub: HubContext) -> None:
    guard = LoginGuard()
    sprayer = client(api_hub, "10.0.0.66", guard=guard)
    for i in range(ADDRESS_FAILURES):
        assert login(sprayer, f"user{i}", "guess") == "/?login_failed=1"
    assert login(sprayer, OTHER_STAFF, PASSWORD) == "/?login_locked=1"  # even a real login, from there
    assert login(client(api_hub, "10.0.0.7", guard=guard), OTHER_STAFF, PASSWORD) == "/"  # elsewhere: fine


def test_a_success_clears_the_users_failures(api_hub: HubContext) -> None:
    c = client(api_hub)
    for _ in range(USER_FAILURES - 1):
        login(c, STAFF, "guess")
    assert login(c, STAFF, PASSWORD) == "/"
    for _ in range(USER_FAILURES - 1):
        login(c, STAFF, "guess")
    assert login(c, STAFF, PASSWORD) == "/"


def test_the_lock_ends_after_its_time() -> None:
    now = [1000.0]
    guard = LoginGuard(clock=lambda: now[0])
    for _ in range(USER_FAILURES):
        guard.failed(STAFF, "a")
    assert guard.retry_after(STAFF, "b") == 15 * 60
    now[0] += 15 * 60 + 1
    assert guard.retry_after(STAFF, "b") == 0
    # failures older than the window are forgotten
    for _ in range(USER_FAILURES - 1):
        guard.failed(STAFF, "a")
    now[0] += 15 * 60 + 1
    guard.failed(STAFF, "a")
    assert guard.retry_after(STAFF, "b") == 0


def test_an_unknown_user_costs_the_same_pbkdf2_as_a_known_one(api_hub: HubContext, monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(api_hub)
    calls: list[int] = []
    real = api.hashlib.pbkdf2_hmac

    def counting(name: str, password: bytes, salt: bytes, rounds: int) -> bytes:
        calls.append(rounds)
        return real(name, password, salt, rounds)

    monkeypatch.setattr(api.hashlib, "pbkdf2_hmac", counting)
    login(c, STAFF, "guess")
    known = list(calls)
    calls.clear()
    login(c, "nobody-here", "guess")
    assert known == calls == [FAST_ROUNDS]  # the rounds the stored hashes have
