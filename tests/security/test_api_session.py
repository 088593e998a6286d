"""Sessions: the cookie is HttpOnly, SameSite=Strict, Secure when served over HTTPS, holds a
random token whose session lives on the server and ends on logout; login and logout refuse
cross-site posts; no API answer without a session or Basic login."""

from __future__ import annotations

from fastapi.testclient import TestClient

from docex.hub.api import SESSION_COOKIE, create_app
from docex.hub.context import HubContext
from tests.security.conftest import PASSWORD, STAFF

SITE = "http://testserver"


def _client(ctx: HubContext, base_url: str = SITE) -> TestClient:
    return TestClient(create_app(ctx), base_url=base_url, follow_redirects=False)


def _login(c: TestClient, origin: str = SITE) -> tuple[int, str]:
    r = c.post("/login", data={"username": STAFF, "password": PASSWORD}, headers={"origin": origin})
    return r.status_code, r.headers.get("set-cookie", "")


def test_the_session_cookie_flags_over_http_and_https(api_hub: HubContext) -> None:
    status, cookie = _login(_client(api_hub))
    assert status == 303
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path"} <= flags and "samesite=strict" in cookie.lower() and "secure" not in flags

    status, cookie = _login(_client(api_hub, "https://testserver"), origin="https://testserver")
    assert status == 303
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure"} <= flags and "samesite=strict" in cookie.lower()


def test_logout_ends_the_session_on_the_server(api_hub: HubContext) -> None:
    c = _client(api_hub)
    _login(c)
    token = c.cookies[SESSION_COOKIE]
    assert c.get("/api/overview").status_code == 200
    assert c.post("/logout", headers={"origin": SITE}).status_code == 303
    # the cookie kept by an attacker (or a browser that ignored the deletion) is worthless
    thief = _client(api_hub)
    thief.cookies.set(SESSION_COOKIE, token)
    assert thief.get("/api/overview").status_code == 401


def test_a_forged_or_guessed_cookie_is_refused(api_hub: HubContext) -> None:
    import base64

    c = _client(api_hub)
    for forged in ("", "x", base64.urlsafe_b64encode(f"{STAFF}|9999999999|00".encode()).decode(), "A" * 4000):
        c.cookies.set(SESSION_COOKIE, forged)
        assert c.get("/api/documents").status_code == 401


def test_login_and_logout_refuse_cross_site_posts(api_hub: HubContext) -> None:
    c = _client(api_hub)
    data = {"username": STAFF, "password": PASSWORD}
    for headers in ({}, {"origin": "http://evil.example"}, {"origin": "null"}, {"referer": "http://evil.example/x"},
                    {"origin": "https://testserver"}, {"origin": "http://testserver.evil.example"}):
        r = c.post("/login", data=data, headers=headers)
        assert r.status_code == 403 and SESSION_COOKIE not in r.cookies, headers
    # the same-origin Referer is enough when a browser sends no Origin
    assert c.post("/login", data=data, headers={"referer": SITE + "/"}).status_code == 303
    assert c.get("/api/overview").status_code == 200
    # a cross-site logout does not end the session
    assert c.post("/logout", headers={"origin": "http://evil.example"}).status_code == 403
    assert c.get("/api/overview").status_code == 200


def test_no_api_answer_without_a_login(api_hub: HubContext) -> None:
    c = _client(api_hub)
    for path in ("/api/overview", "/api/documents", "/api/documents/x", "/api/units", "/api/units/x",
                 "/api/documents?q=' OR 1=1 --", "/api//overview", "/API/overview"):
        assert c.get(path).status_code in (401, 404), path
        assert c.get(path).status_code != 200
    assert c.get("/api/overview", headers={"authorization": "Basic !!!"}).status_code == 401
    assert c.get("/api/overview", headers={"authorization": "Bearer x"}).status_code == 401
