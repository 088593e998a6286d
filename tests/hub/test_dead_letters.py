"""Dead letters as the information centre reads them (`docex.hub.dead_letters.page` and the
read API's /api/dead-letters): unit names, the document where the hub knows it, the named
code, the tries and the replay command, newest first, a page at a time."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pika
import pytest
from fastapi.testclient import TestClient

from docex.broker import Delivery
from docex.hub.api import create_app, hash_password
from docex.hub.context import HubContext
from docex.hub.dead_letters import DeadLetters, list_dead_letters, page
from docex.hub.models import Document, Unit
from docex.protocols import messages

ZFB, XWB = "qingyuan.yangshan.zfb", "qingyuan.yangshan.xwb"
HOSTILE = '<img src=x onerror="alert(1)">关于<b>值班</b>的通知'


def _dead(ctx: HubContext, *, queue: str, message_id: str, user_id: str, reason: str, count: int | None,
          recipient: str = "") -> None:
    headers: dict[str, object] = {"x-death": [{"queue": queue, "reason": reason, "exchange": "docex.deliver",
                                               "routing-keys": [recipient or "docex.document"], "count": 1}]}
    if count is not None:
        headers["x-delivery-count"] = count
    if recipient:
        headers[messages.H_RECIPIENT] = recipient
    DeadLetters(ctx)(Delivery(body=b"envelope bytes " + message_id.encode(), message_id=message_id, headers=headers,
                              user_id=user_id, redelivered=True, delivery_tag=1,
                              properties=pika.BasicProperties(type=messages.DOCUMENT)))


@pytest.fixture
def county(keyed_ctx: HubContext) -> Iterator[tuple[HubContext, str, str]]:
    """Two dead letters: a copy for xwb that its agent failed on 11 times, and a document
    zfb published that the hub's own intake refused outright."""
    ctx = keyed_ctx
    routed, ingress = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    with ctx.db.session() as s:
        s.add(Unit(address=ZFB, name="阳山县人民政府办公室"))
        s.add(Unit(address=XWB, name="中共阳山县委宣传部"))
        s.add(Document(message_id=routed, sender=ZFB, title=HOSTILE, doc_number="阳府办〔2011〕45号",
                       envelope_sha256="0" * 64, created_at=now, accepted_at=now))
    user = ctx.config.broker.user_prefix
    _dead(ctx, queue=f"unit.{XWB}", message_id=routed, user_id=f"{user}hub", reason="delivery_limit", count=10,
          recipient=XWB)
    _dead(ctx, queue="hub.ingress", message_id=ingress, user_id=f"{user}{ZFB}", reason="rejected", count=None)
    yield ctx, routed, ingress


def test_a_page_names_units_the_document_the_code_the_tries_and_the_replay(county: tuple[HubContext, str, str]) -> None:
    ctx, routed, ingress = county
    got = page(ctx.config, ctx.db)
    assert got["total"] == 2 and [x["message_id"] for x in got["items"]] == [ingress, routed]  # newest first
    died_in_ingress, copy = got["items"]

    assert copy["sender"] == ZFB and copy["sender_name"] == "阳山县人民政府办公室"
    assert copy["recipient"] == XWB and copy["recipient_name"] == "中共阳山县委宣传部"
    assert copy["doc_number"] == "阳府办〔2011〕45号" and copy["title"] == HOSTILE  # data; the page escapes it
    assert copy["code"] == "dead_letter" and copy["code_zh"] == "消息多次处理失败，已转入死信队列"
    assert copy["tries"] == 11 and copy["kept"] and not copy["replayed"]
    assert copy["replay"] == f"docex hub dead-letters replay --home {ctx.config.home} {copy['id']}"
    assert copy["at"].endswith("+08:00")  # local time, Asia/Shanghai

    # Died in the hub's own ingress: the publishing unit by its login, no recipient, one try.
    assert died_in_ingress["sender"] == ZFB and died_in_ingress["sender_name"] == "阳山县人民政府办公室"
    assert died_in_ingress["recipient"] == "" and died_in_ingress["title"] == "" and died_in_ingress["tries"] == 1
    assert died_in_ingress["queue"] == "hub.ingress"

    second = page(ctx.config, ctx.db, offset=1, limit=1)
    assert second["total"] == 2 and [x["message_id"] for x in second["items"]] == [routed]
    assert page(ctx.config, ctx.db, limit=10_000)["limit"] == 200  # bounded
    assert [d.tries for d in list_dead_letters(ctx.config, ctx.db)] == [11, 1]


def test_the_read_api_lists_them_behind_the_login(county: tuple[HubContext, str, str]) -> None:
    ctx, routed, ingress = county
    ctx.config.api.users["zhang"] = hash_password("secret")
    with TestClient(create_app(ctx), base_url="http://127.0.0.1:8470") as client:
        assert client.get("/api/dead-letters").status_code == 401
        got = client.get("/api/dead-letters", params={"limit": 1}, auth=("zhang", "secret")).json()
        assert got["total"] == 2 and got["limit"] == 1 and [x["message_id"] for x in got["items"]] == [ingress]
        got = client.get("/api/dead-letters", params={"offset": 1}, auth=("zhang", "secret")).json()
        assert [x["message_id"] for x in got["items"]] == [routed]
        assert client.get("/api/overview", auth=("zhang", "secret")).json()["dead_letters"] == 2
