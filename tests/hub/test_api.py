"""The hub's read API: plain HTTP only on localhost; HTTPS with the hub's server certificate
(from its CA, naming this machine) when asked and on every other address; the overdue
filter the dashboard's 超期未签收 card opens, the flags, the favicon and the link card."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
import requests

from docex.hub import states
from docex.hub.api import ApiServer, hash_password
from docex.hub.config import ApiConfig, KeyConfig
from docex.hub.context import HubContext
from docex.hub.models import Delivery, Document, Unit, utcnow
from docex.hub.network import api_scheme
from tests.conftest import Pki


def test_the_read_api_speaks_https_with_the_hubs_certificate(keyed_ctx: HubContext, pki: Pki) -> None:
    config = replace(keyed_ctx.config, api=ApiConfig(tls=True), keys=KeyConfig(insecure_no_passphrase=True))
    keyed_ctx.config = config
    pki.county.issue_server("hub", config.hub_dir, None, hub_prefix=config.prefix, ip_addresses=("127.0.0.1",),
                            key_name="server")
    server = ApiServer(keyed_ctx, "127.0.0.1", 0)
    server.start()
    try:
        url = f"https://127.0.0.1:{server.port}/healthz"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, timeout=10)  # the system does not know the information centre's CA
        assert requests.get(url, timeout=10, verify=str(pki.county.directory / "ca.crt")).json() == {"status": "ok"}
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)  # no plain HTTP beside it
    finally:
        server.stop()


def test_units_are_told_https_unless_the_api_is_on_localhost_only(keyed_ctx: HubContext) -> None:
    config = keyed_ctx.config
    assert api_scheme(config) == "http"
    assert api_scheme(replace(config, api=ApiConfig(host="0.0.0.0"))) == "https"
    assert api_scheme(replace(config, api=ApiConfig(tls=True))) == "https"


def test_overdue_filter_flags_favicon_and_no_link(ctx: HubContext) -> None:
    """`/api/documents?overdue=true` lists exactly what the overview's overdue count counts
    (a recipient not signed for past the deadline, delivered or not); a paper route and a
    refusal are flagged; the page's icon is served; no link configured is an empty list."""
    xxzx, zfb, fgj = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
    now = utcnow()
    with ctx.db.session() as s:
        s.add_all([Unit(address=a, name=n) for a, n in ((xxzx, "信息中心"), (zfb, "县府办"), (fgj, "发改局"))])
        for mid, hours_ago in (("late", 6), ("signed", 6), ("fresh", 1)):
            at = now - dt.timedelta(hours=hours_ago)
            s.add(Document(message_id=mid, sender=xxzx, title=mid, doc_number=mid, envelope_sha256="0" * 64,
                           created_at=at, accepted_at=at, deadline=at + dt.timedelta(hours=4)))
        s.flush()
        s.add_all([Delivery(message_id="late", recipient=zfb, state=states.DELIVERED),  # delivered, not signed
                   Delivery(message_id="late", recipient=fgj, state=states.PAPER_ROUTE),
                   Delivery(message_id="signed", recipient=zfb, state=states.SIGNED_FOR),
                   Delivery(message_id="fresh", recipient=zfb, state=states.REJECTED)])
    ctx.config = replace(ctx.config, api=ApiConfig(users={"wang": hash_password("secret-pass")}))
    server = ApiServer(ctx, "127.0.0.1", 0)
    server.start()
    try:
        base, auth = f"http://127.0.0.1:{server.port}", ("wang", "secret-pass")
        overview = requests.get(f"{base}/api/overview", auth=auth, timeout=10).json()
        overdue = requests.get(f"{base}/api/documents", params={"overdue": "true"}, auth=auth, timeout=10).json()
        assert [d["message_id"] for d in overdue["items"]] == ["late"] and overview["overdue"] == 1
        every = {d["message_id"]: d["flags"] for d in
                 requests.get(f"{base}/api/documents", auth=auth, timeout=10).json()["items"]}
        assert every == {"late": ["paper_route"], "signed": [], "fresh": ["rejected"]}
        assert overview["links"] == []  # the page then shows 未配置上级链路
        assert overview["generated_at"].endswith("+08:00") and overview["timezone"].startswith("Asia/Shanghai")
        icon = requests.get(f"{base}/favicon.svg", timeout=10)
        assert icon.status_code == 200 and "svg" in icon.headers["content-type"]
        assert requests.get(f"{base}/api/documents", params={"overdue": "true"}, timeout=10).status_code == 401
    finally:
        server.stop()
