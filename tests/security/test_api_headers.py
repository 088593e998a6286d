"""Every answer of the read API carries CSP, X-Frame-Options DENY, nosniff and a
Referrer-Policy: pages, scripts, API answers, refusals, redirects and not-found alike."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from docex.hub.api import create_app
from docex.hub.context import HubContext
from tests.security.conftest import PASSWORD, STAFF

AUTH = {"authorization": "Basic " + base64.b64encode(f"{STAFF}:{PASSWORD}".encode()).decode()}


def test_every_answer_carries_the_security_headers(api_hub: HubContext) -> None:
    c = TestClient(create_app(api_hub), follow_redirects=False)
    answers = [
        c.get("/"), c.get("/app.js"), c.get("/style.css"), c.get("/healthz"), c.get("/nosuch"),
        c.get("/api/overview"), c.get("/api/overview", headers=AUTH), c.get("/api/units", headers=AUTH),
        c.get("/api/documents/none", headers=AUTH), c.get("/docs"), c.get("/openapi.json"),
        c.post("/login", data={"username": STAFF, "password": "x"}, headers={"origin": "http://testserver"}),
        c.post("/login", data={"username": STAFF, "password": "x"}), c.post("/logout"), c.post("/tsa", content=b"x"),
    ]
    statuses = set()
    for r in answers:
        statuses.add(r.status_code)
        assert r.headers["x-frame-options"] == "DENY", r.request.url
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert {200, 303, 401, 403, 404} <= statuses
    # the dashboard itself runs no inline script: its policy allows only its own files
    page = c.get("/").headers["content-security-policy"]
    assert "script-src 'self';" in page and "unsafe-inline" not in page
    assert c.get("/api/overview", headers=AUTH).headers["cache-control"] == "no-store"
