"""The agent's local API (the desk's and office systems'), driven in-process with real
agent homes, real envelopes and the agent's own receiving code (no broker): login with a
personal certificate, sessions with CSRF, bearer tokens, every endpoint, and hostile input
(ids, file names, sizes, classification, cross-site requests). The same flows against
running agents and the hub: tests/e2e/test_desk.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from docex.agent.context import AgentContext
from docex.agent.desk.api import create_app, safe_filename
from docex.agent.desk.auth import add_person, new_token
from docex.agent.receiving import Receiver
from docex.agent.sending import Draft, queue_document
from docex.agent.store import Action, Outgoing, Recall, Sent
from docex.pki.names import common_name
from docex.pki.seal import verify_seals
from docex.protocols import messages
from docex.protocols.errors import DocexError
from docex.protocols.recall import verify_recall
from docex.protocols.receipt import verify_receipt
from tests.agent.homes import County, build_county, foreign_units, letter, outgoing
from tests.conftest import Pki
from tests.documents.gbt9704 import pdf_text

XXZX, ZFB, FGJ = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"
PASSPHRASE = "张三的口令-2011"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(scope="module")
def county(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> County:
    return build_county(pki, tmp_path_factory.mktemp("desk"))


@pytest.fixture(scope="module")
def clerk(county: County, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> str:
    """张三 of 县府办, with an encrypted personal key, registered with ZFB's agent."""
    folder = tmp_path_factory.mktemp("zhangsan")
    pki.county.issue_person(ZFB, "张三", folder, PASSPHRASE.encode())
    ident, name = add_person(county.context(ZFB), folder)
    assert name == "张三"
    return ident


@pytest.fixture()
def zfb(county: County) -> Iterator[AgentContext]:
    ctx = county.context(ZFB)
    yield ctx
    ctx.store.dispose()


@pytest.fixture()
def client(zfb: AgentContext) -> Iterator[TestClient]:
    with TestClient(create_app(zfb), base_url="http://127.0.0.1:8480") as c:
        yield c


def login(client: TestClient, person: str, passphrase: str = PASSPHRASE) -> str:
    r = client.post("/api/login", json={"person": person, "passphrase": passphrase})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf"])


def deliver(county: County, to: str = ZFB, *, title: str = "关于做好国庆值班工作的通知", priority: str = "加急",
            cc: tuple[str, ...] = ()) -> str:
    """XXZX sends a document; `to`'s own receiving code takes it in."""
    sender = county.context(XXZX)
    files = {"正文.pdf": PDF, "附件1 值班表.txt": "值班表".encode()}
    mid = queue_document(sender, Draft(to=(to,), cc=cc, title=title, doc_number="阳信发〔2011〕21号",
                                       priority=priority, files=files))
    body = outgoing(sender, mid).body
    for address in (to, *cc):
        Receiver(county.context(address)).document(body)
    return mid


def test_login_proves_the_key_and_sets_a_strict_cookie(client: TestClient, clerk: str) -> None:
    persons = client.get("/api/persons").json()
    assert {"id": clerk, "name": "张三"} in persons["persons"]
    assert persons["timezone"] == "Asia/Shanghai"
    assert (persons["notify"], persons["sound"]) == (True, True)  # [desk] notify, sound: the page's defaults

    assert client.get("/api/inbox").status_code == 401
    bad = client.post("/api/login", json={"person": clerk, "passphrase": "wrong"})
    assert bad.status_code == 401 and bad.json()["code"] == "login_failed"
    assert client.post("/api/login", json={"person": "../../etc", "passphrase": "x"}).status_code == 422
    assert client.post("/api/login", json={"person": "abc123", "passphrase": "x"}).json()["code"] == "login_failed"

    r = client.post("/api/login", json={"person": clerk, "passphrase": PASSPHRASE})
    assert r.status_code == 200 and r.json()["name"] == "张三"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "docex_desk=" in cookie
    assert client.get("/api/me").json()["name"] == "张三"
    # Security headers on everything.
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"


def test_changes_need_the_csrf_token_and_our_origin(county: County, client: TestClient, clerk: str) -> None:
    mid = deliver(county)
    csrf = login(client, clerk)
    r = client.post(f"/api/inbox/{mid}/sign-for")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.post(f"/api/inbox/{mid}/sign-for", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post(f"/api/inbox/{mid}/sign-for", headers={"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:8480"})
    assert r.status_code == 200 and r.json()["state"] == "signed_for"


def test_inbox_shows_names_deadline_and_files_and_sign_for_is_the_persons_signature(
        county: County, zfb: AgentContext, client: TestClient, clerk: str) -> None:
    mid = deliver(county, cc=(FGJ,))
    csrf = login(client, clerk)
    items = {i["message_id"]: i for i in client.get("/api/inbox").json()}
    doc = items[mid]
    assert doc["sender_name"] == "阳山县信息中心" and doc["priority"] == "加急"
    assert doc["to"] == [{"address": ZFB, "name": "阳山县人民政府办公室"}]
    assert doc["cc"] == [{"address": FGJ, "name": "阳山县发展和改革局"}]
    assert doc["deadline"] > doc["received_at"] and doc["overdue"] is False and doc["state"] == "delivered"
    assert {f["name"] for f in doc["files"]} == {"正文.pdf", "附件1 值班表.txt"}
    assert [i["message_id"] for i in client.get("/api/inbox", params={"q": "国庆值班"}).json()].count(mid) == 1

    pdf = client.get(f"/api/inbox/{mid}/files/正文.pdf", params={"inline": 1})
    assert pdf.status_code == 200 and pdf.content == PDF and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline;")
    assert "filename*=UTF-8''%E6%AD%A3%E6%96%87.pdf" in pdf.headers["content-disposition"]
    txt = client.get(f"/api/inbox/{mid}/files/附件1 值班表.txt")
    assert txt.headers["content-disposition"].startswith("attachment;") and txt.content == "值班表".encode()
    # Opening it is delivery evidence: one `opened` receipt, signed by the person who opened it.
    opened, opener = verify_receipt(outgoing(zfb, messages.receipt_key(mid, ZFB, "opened")).body, zfb.trust)
    assert (opened.event, opened.person, common_name(opener)) == ("opened", "张三", "张三")

    r = client.post(f"/api/inbox/{mid}/sign-for", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["person"] == "张三"
    receipt, signer = verify_receipt(outgoing(zfb, messages.receipt_key(mid, ZFB, "signed_for")).body, zfb.trust)
    assert receipt.person == "张三" and common_name(signer) == "张三"  # the person's own certificate
    again = client.post(f"/api/inbox/{mid}/sign-for", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and again.json()["code"] == "already_done"
    with zfb.store.session() as s:
        acts = [(a.actor, a.action) for a in s.execute(select(Action).where(Action.message_id == mid)).scalars()]
    assert ("张三", "signed_for") in acts and ("张三", "download") in acts

    slip = client.get(f"/api/inbox/{mid}/receipt.pdf")
    assert slip.status_code == 200 and slip.content.startswith(b"%PDF") and len(slip.content) > 5000
    # Who signed for it, and when (local time, from the action recorded with the certificate).
    with zfb.store.session() as s:
        at = s.execute(select(Action.at).where(Action.message_id == mid, Action.action == "signed_for")).scalar_one()
    text = pdf_text(slip.content)
    assert "公文签收单" in text and "签收人张三" in text and "阳信发〔2011〕21号" in text, text
    assert f"签收时间{_local(at)}" in text, text


def _local(at: dt.datetime) -> str:
    """As the 签收单 prints a time: Asia/Shanghai (the desk's default zone), seconds."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    return aware.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y年%m月%d日%H:%M:%S")


def test_return_needs_a_reason(county: County, client: TestClient, clerk: str) -> None:
    mid = deliver(county)
    csrf = login(client, clerk)
    empty = client.post(f"/api/inbox/{mid}/return", json={"reason": ""}, headers={"X-CSRF-Token": csrf})
    assert empty.status_code == 422
    r = client.post(f"/api/inbox/{mid}/return", json={"reason": "缺少附件2"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "returned" and r.json()["reason"] == "缺少附件2"
    text = pdf_text(client.get(f"/api/inbox/{mid}/receipt.pdf").content)
    assert "状态已退回" in text and "退回人张三" in text and "退回理由缺少附件2" in text, text


@pytest.mark.parametrize("path", [
    "/api/inbox/not-a-uuid", "/api/inbox/..%2F..%2Fdocex.toml", "/api/inbox/00000000-0000-4000-8000-000000000000",
])
def test_hostile_ids_are_refused(client: TestClient, clerk: str, path: str) -> None:
    login(client, clerk)
    r = client.get(path)
    assert r.status_code in (404, 422)


def test_file_names_come_from_the_manifest_never_the_request(county: County, client: TestClient, clerk: str) -> None:
    mid = deliver(county)
    login(client, clerk)
    for name in ("..%2Fmanifest.json", "manifest.json", "..%2F..%2Fdocex.toml", "%2Fetc%2Fpasswd"):
        r = client.get(f"/api/inbox/{mid}/files/{name}")
        assert r.status_code == 404, name


def test_send_multipart_queues_a_document(county: County, zfb: AgentContext, client: TestClient, clerk: str) -> None:
    csrf = login(client, clerk)
    meta = {"to": [XXZX], "cc": [FGJ], "title": "关于报送材料的函", "doc_number": "阳府办函〔2011〕5号",
            "priority": "平急", "classification": ""}
    files = [("files", ("正文.pdf", PDF, "application/pdf")), ("files", ("附件 1.xlsx", b"xlsx", "application/octet-stream")),
             ("files", ("附件2.docx", b"docx", "application/octet-stream"))]
    r = client.post("/api/send", data={"meta": json.dumps(meta, ensure_ascii=False)}, files=files,
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    mid = r.json()["message_id"]
    with zfb.store.session() as s:
        assert s.get(Sent, mid) is not None
        assert s.execute(select(Outgoing).where(Outgoing.message_id == mid)).scalar_one().kind == messages.DOCUMENT
    sent = {d["message_id"]: d for d in client.get("/api/sent").json()}[mid]
    assert {r["name"] for r in sent["recipients"]} == {"阳山县信息中心", "阳山县发展和改革局"}
    assert sent["recallable"] is True

    # Recall it (with the person's signature); a second recall is harmless.
    rec = client.post(f"/api/sent/{mid}/recall", json={"reason": "附件有误"}, headers={"X-CSRF-Token": csrf})
    assert rec.status_code == 200 and rec.json()["new"] is True
    assert client.post(f"/api/sent/{mid}/recall", json={"reason": "附件有误"},
                       headers={"X-CSRF-Token": csrf}).json()["new"] is False
    with zfb.store.session() as s:
        row = s.execute(select(Recall).where(Recall.message_id == mid)).scalar_one()
        recall, signer = verify_recall(row.der, zfb.trust)
    assert recall.person == "张三" and recall.sender == ZFB and common_name(signer) == "张三"


def test_compose_lays_out_the_document_and_seals_it_with_the_units_seal(zfb: AgentContext, client: TestClient,
                                                                         clerk: str) -> None:
    h = {"X-CSRF-Token": login(client, clerk)}
    fields = {"title": "关于开展安全生产大检查的通知", "doc_number": "阳府办发〔2011〕52号",
              "main_recipients": ["各乡镇人民政府"], "body": "请认真贯彻落实。"}
    plain = client.post("/api/compose", json=fields, headers=h)
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/pdf"
    text = pdf_text(plain.content)
    assert "阳山县人民政府办公室" in text and "阳府办发〔2011〕52号" in text  # the unit's own header
    assert verify_seals(plain.content, zfb.trust.anchors, list(zfb.trust.crls), ZFB, require_crl=False).signatures == []

    sealed = client.post("/api/compose", json={**fields, "seal": True}, headers=h)
    report = verify_seals(sealed.content, zfb.trust.anchors, list(zfb.trust.crls), ZFB, require_crl=False)
    assert report.error is None and [seal.address for seal in report.seals] == [ZFB]
    with zfb.store.session() as s:
        acts = [a.detail for a in s.execute(select(Action).where(Action.action == "compose", Action.actor == "张三"))
                .scalars()]
    assert "sealed 关于开展安全生产大检查的通知" in acts

    classified = client.post("/api/compose", json={**fields, "classification": "机密"}, headers=h)
    assert classified.status_code == 422 and classified.json()["code"] == "classified"
    assert client.post("/api/compose", json={"title": "t"}, headers=h).json()["code"] == "bad_metadata"
    assert client.post("/api/compose", json=fields).status_code == 403  # a change: the CSRF token too


@pytest.mark.parametrize(("meta", "files", "code"), [
    ({"to": [XXZX], "title": "涉密", "classification": "秘密"}, [("files", ("a.pdf", PDF))], "classified"),
    ({"to": [XXZX], "title": "t"}, [("files", ("../../x.pdf", PDF))], None),  # folders are dropped: x.pdf
    ({"to": [XXZX], "title": "t"}, [("files", (".hidden", b"x"))], "unsafe_filename"),
    ({"to": [XXZX], "title": "t"}, [("files", ("a\u202eb.pdf", b"x"))], "unsafe_filename"),
    ({"to": [XXZX], "title": "t"}, [("files", ("a.pdf", PDF)), ("files", ("a.pdf", PDF))], "unsafe_filename"),
    ({"to": [XXZX], "title": "t"}, [], "bad_metadata"),
    ({"to": ["qingyuan.yangshan.nosuch"], "title": "t"}, [("files", ("a.pdf", PDF))], "unknown_recipient"),
    ({"to": [], "title": "t"}, [("files", ("a.pdf", PDF))], "bad_metadata"),
    ({"to": [XXZX], "title": "t", "priority": "火急"}, [("files", ("a.pdf", PDF))], "bad_metadata"),
])
def test_send_refuses_bad_input_with_a_code(client: TestClient, clerk: str, meta: dict[str, object],
                                            files: list[tuple[str, tuple[str, bytes]]], code: str | None) -> None:
    csrf = login(client, clerk)
    r = client.post("/api/send", data={"meta": json.dumps(meta, ensure_ascii=False)}, files=files or None,
                    headers={"X-CSRF-Token": csrf})
    if code is None:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code in (413, 422) and r.json()["code"] == code, r.text


def test_too_many_files_or_bytes_are_refused(zfb: AgentContext, client: TestClient, clerk: str) -> None:
    csrf = login(client, clerk)
    meta = json.dumps({"to": [XXZX], "title": "t"})
    many = [("files", (f"f{i}.txt", b"x")) for i in range(25)]
    assert client.post("/api/send", data={"meta": meta}, files=many, headers={"X-CSRF-Token": csrf}).status_code == 400
    huge = str(zfb.config.max_envelope_bytes + 10**6)
    r = client.post("/api/send", content=b"x", headers={"X-CSRF-Token": csrf, "Content-Length": huge,
                                                         "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


def test_safe_filename() -> None:
    assert safe_filename("C:\\Users\\a\\正文.pdf") == "正文.pdf"
    for bad in ("", "..", ".env", "a\u202eb.pdf", "x" * 200):
        with pytest.raises(DocexError):
            safe_filename(bad)


def test_bearer_token_acts_for_the_unit(county: County, zfb: AgentContext, client: TestClient) -> None:
    token = new_token(zfb.config.home, "OA")
    assert client.get("/api/inbox", headers={"Authorization": "Bearer nope"}).status_code == 401
    mid = deliver(county)
    auth = {"Authorization": f"Bearer {token}"}
    assert any(i["message_id"] == mid for i in client.get("/api/inbox", headers=auth).json())
    # No cookie, so no CSRF token needed; the unit's seal signs.
    assert client.post(f"/api/inbox/{mid}/sign-for", headers=auth).json()["state"] == "signed_for"
    receipt, signer = verify_receipt(outgoing(zfb, messages.receipt_key(mid, ZFB, "signed_for")).body, zfb.trust)
    assert receipt.person == "" and common_name(signer) == "阳山县人民政府办公室"
    with zfb.store.session() as s:
        act = s.execute(select(Action).where(Action.message_id == mid, Action.action == "signed_for")).scalar_one()
    assert act.actor == "token:OA"
    units = client.get("/api/directory", params={"q": "发展"}, headers=auth).json()
    assert [u["name"] for u in units] == ["阳山县发展和改革局"]
    assert client.get("/api/directory", params={"q": "qingyuan.yangshan.zfb"}, headers=auth).json()[0]["self"] is True


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/login", "/api/inbox", "/api/inbox/{message_id}", "/api/inbox/{message_id}/sign-for",
                 "/api/inbox/{message_id}/return", "/api/send", "/api/sent", "/api/sent/{message_id}/recall",
                 "/api/directory", "/api/events"):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_add_person_refuses_other_units_and_unprotected_keys(county: County, pki: Pki, tmp_path: Path) -> None:
    other = tmp_path / "other"
    pki.county.issue_person(FGJ, "李四", other, b"pw")
    with pytest.raises(DocexError) as err:
        add_person(county.context(ZFB), other)
    assert err.value.code == "sender_mismatch"
    bare = tmp_path / "bare"
    pki.county.issue_person(ZFB, "王五", bare, None)
    with pytest.raises(DocexError) as err:
        add_person(county.context(ZFB), bare)
    assert err.value.code == "key_unreadable"


def test_big_bodies_and_foreign_hosts_are_refused_before_reading(client: TestClient, clerk: str) -> None:
    big = client.post("/api/login", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                      headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    # A rebinding attack names its own host: refused even though it reached 127.0.0.1.
    assert client.get("/api/persons", headers={"Host": "evil.example:8480"}).status_code == 400
    assert client.get("/api/persons", headers={"Host": "localhost:8480"}).status_code == 200


def test_overdue_and_reminded_documents_are_marked(county: County, zfb: AgentContext, client: TestClient,
                                                   clerk: str) -> None:
    from sqlalchemy import update

    from docex.agent.store import Received

    mid = deliver(county, priority="特急")
    login(client, clerk)
    doc = client.get(f"/api/inbox/{mid}").json()
    assert doc["overdue"] is False and doc["reminders"] == 0
    # Five hours later (特急: 4 h) the hub's reminder arrives.
    with zfb.store.session() as s:
        s.execute(update(Received).where(Received.message_id == mid)
                  .values(received_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)))
    Receiver(zfb).notice(county.notice(mid, "reminder", "overdue", (ZFB,)))
    doc = client.get(f"/api/inbox/{mid}").json()
    assert doc["overdue"] is True and doc["reminders"] == 1


def test_documents_awaiting_trust_are_shown_but_cannot_be_opened_or_signed_for(
        zfb: AgentContext, client: TestClient, clerk: str, tmp_path: Path) -> None:
    """Kept until the sender's CA reaches this terminal: listed with every state and on
    their own, their cover as JSON (the page puts it in as text), nothing to open yet."""
    swb = "qingyuan.swb"
    _, units = foreign_units(tmp_path, {swb: "中共清远市委办公室"})
    title = '关于<img src=x onerror="alert(1)">联网的通知'
    mid, body = letter(units[swb], zfb, title=title, doc_number="清办发〔2011〕9号", files={"正文.txt": b"x"})
    Receiver(zfb).document(body)
    csrf = login(client, clerk)

    listed = client.get("/api/inbox").json()
    assert listed[0]["message_id"] == mid
    doc = listed[0]
    assert (doc["state"], doc["sender"], doc["sender_name"], doc["title"], doc["files"]) == (
        "awaiting_trust", swb, swb, title, [])  # the address until our directory names the unit
    assert doc["wait_until"] > doc["received_at"] and doc["deadline"] is None
    assert [i["message_id"] for i in client.get("/api/inbox", params={"state": "awaiting_trust"}).json()] == [mid]
    assert mid not in [i["message_id"] for i in client.get("/api/inbox", params={"state": "delivered"}).json()]
    assert client.get(f"/api/inbox/{mid}").json()["state"] == "awaiting_trust"
    assert client.get(f"/api/inbox/{mid}/files/正文.txt").status_code == 404
    refused = client.post(f"/api/inbox/{mid}/sign-for", headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 404 and refused.json()["code"] == "unknown_document"
    assert client.get("/api/inbox", params={"state": "nonsense"}).status_code == 422
    # The page shows the state in its own words, and sets every value as text.
    assert '"state.awaiting_trust": "等待信任"' in client.get("/static/i18n.js").text
    assert "innerHTML" not in client.get("/static/app.js").text
