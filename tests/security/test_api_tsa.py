"""The time-stamping authority is rate-limited per client address, at the hub (/tsa) and
standalone (`docex tsa run`): beyond the burst a client gets 429 with Retry-After while the
others are still served."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request

from asn1crypto import algos, tsp
from fastapi.testclient import TestClient

from docex.hub.api import create_app
from docex.hub.context import HubContext
from docex.pki.ratelimit import RateLimiter
from docex.pki.tsa import QUERY_TYPE, TimeStampAuthority, response_status, serve
from tests.conftest import Pki

REQUEST = tsp.TimeStampReq({
    "version": "v1", "cert_req": False,
    "message_imprint": {"hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                        "hashed_message": hashlib.sha256(b"doc").digest()},
}).dump()


def test_the_hub_tsa_answers_429_beyond_a_clients_burst(api_hub: HubContext, pki: Pki) -> None:
    pki.county.issue_tsa("阳山县信息中心时间戳服务", api_hub.config.home / "tsa", None)
    limiter = RateLimiter(rate=0.001, burst=3)  # no refill within the test: the count decides
    app = create_app(api_hub, tsa_limiter=limiter)
    busy = TestClient(app, client=("10.0.0.9", 1))
    other = TestClient(app, client=("10.0.0.10", 1))
    headers = {"content-type": QUERY_TYPE}
    for _ in range(3):
        r = busy.post("/tsa", content=REQUEST, headers=headers)
        assert r.status_code == 200 and response_status(r.content)[0] == "granted"
    refused = busy.post("/tsa", content=REQUEST, headers=headers)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert other.post("/tsa", content=REQUEST, headers=headers).status_code == 200


def test_the_standalone_tsa_answers_429_beyond_the_burst(pki: Pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pki.county.issue_tsa("阳山县信息中心时间戳服务", tmp_path, None)
    server = serve(TimeStampAuthority.load(tmp_path, None), port=0, limiter=RateLimiter(rate=0.001, burst=2))
    try:
        def post() -> int:
            req = urllib.request.Request(server.url, data=REQUEST, headers={"Content-Type": QUERY_TYPE})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return int(r.status)
            except urllib.error.HTTPError as exc:
                assert exc.code != 429 or int(exc.headers["Retry-After"]) >= 1
                return exc.code

        assert [post() for _ in range(3)] == [200, 200, 429]
    finally:
        server.shutdown()
        server.server_close()


def test_the_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.retry_after("a") == 1
    now[0] += 0.5
    assert limiter.allow("a") and not limiter.allow("a")
    assert limiter.allow("b")
