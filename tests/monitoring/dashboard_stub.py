"""A stand-in for the hub's read API, for the dashboard's own browser test only: serves
the static dashboard and canned JSON for exactly the endpoints the page may read. The
real end-to-end browser test runs against the hub."""

from __future__ import annotations

import copy
import json
import mimetypes
import threading
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from docex.monitoring.dashboard import DASHBOARD_DIR, FILES

USER, PASSWORD = "xxzx-zhang", "correct horse"
SESSION = "docex_session=stub-session-1"


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def canned() -> dict[str, Any]:
    """A day at the county exchange: one notice to six units in mixed states."""
    now = datetime.now(UTC).replace(microsecond=0)
    sent = now - timedelta(hours=3)

    def rcpt(address: str, name: str, state: str, **times: datetime) -> dict[str, Any]:
        row: dict[str, Any] = {
            "address": address,
            "name": name,
            "state": state,
            "accepted_at": _iso(sent),
            "routed_at": _iso(sent),
            "delivered_at": None,
            "signed_for_at": None,
            "returned_at": None,
            "reason": None,
            "person": "李明" if state == "signed_for" else "",
            "reminders": 0,
        }
        row.update({k: _iso(v) for k, v in times.items()})
        return row

    notice: dict[str, Any] = {
        "message_id": "b3f1c2d4-0001-4a55-9e1b-2011092601aa",
        "doc_number": "阳府办〔2011〕45号",
        "title": "关于做好2011年国庆节期间值班工作的通知",
        "sender": "qingyuan.yangshan.zfb",
        "sender_name": "阳山县人民政府办公室",
        "priority": "urgent",
        "classification": "none",
        "created_at": _iso(sent),
        "deadline": _iso(now + timedelta(hours=21)),
        "recipients": [
            rcpt(
                "qingyuan.yangshan.xwb",
                "中共阳山县委办公室",
                "signed_for",
                delivered_at=sent + timedelta(seconds=4),
                signed_for_at=sent + timedelta(minutes=35),
            ),
            rcpt(
                "qingyuan.yangshan.jw",
                "中共阳山县纪律检查委员会",
                "signed_for",
                delivered_at=sent + timedelta(seconds=6),
                signed_for_at=sent + timedelta(hours=1),
            ),
            rcpt(
                "qingyuan.yangshan.fgj",
                "阳山县发展和改革局",
                "delivered",
                delivered_at=sent + timedelta(seconds=5),
            ),
            rcpt("qingyuan.yangshan.yangcheng", "阳山县阳城镇人民政府", "routed"),
            rcpt(
                "qingyuan.yangshan.libu",
                "阳山县黎埠镇人民政府",
                "returned",
                delivered_at=sent + timedelta(seconds=9),
                returned_at=sent + timedelta(hours=2),
            ),
            rcpt("qingyuan.yangshan.jiangying", "阳山县江英镇人民政府", "paper_route"),
        ],
        "receipts": [],
    }
    notice["recipients"][4]["reason"] = "非本单位职责，请转县政府应急管理办公室"
    notice["recipients"][3]["reminders"] = 1
    for r in notice["recipients"]:
        for event, key in (
            ("delivered", "delivered_at"),
            ("signed_for", "signed_for_at"),
            ("returned", "returned_at"),
        ):
            if r[key]:
                notice["receipts"].append(
                    {
                        "recipient": r["address"],
                        "event": event,
                        "at": r[key],
                        "reason": r["reason"] if event == "returned" else None,
                    }
                )
    other: dict[str, Any] = {
        "message_id": "c9a8e7f6-0002-4b66-8f2c-2011092602bb",
        "doc_number": "阳委办〔2011〕12号",
        "title": "关于召开全县安全生产工作会议的通知",
        "sender": "qingyuan.yangshan.xwb",
        "sender_name": "中共阳山县委办公室",
        "priority": "extra_urgent",
        "classification": "none",
        "created_at": _iso(now - timedelta(hours=1)),
        "deadline": _iso(now + timedelta(hours=2)),
        "recipients": [
            rcpt(
                "qingyuan.yangshan.zfb",
                "阳山县人民政府办公室",
                "delivered",
                delivered_at=now - timedelta(minutes=59),
            )
        ],
        "receipts": [],
    }
    units = [
        {
            "address": "qingyuan.yangshan.zfb",
            "name": "阳山县人民政府办公室",
            "kind": "government",
            "state": "enabled",
            "phase": "electronic_only",
            "last_seen": _iso(now - timedelta(seconds=20)),
            "online": True,
            "sent": 45,
            "received": 130,
            "signed_for_on_time": 121,
            "returned": 2,
            "cert_expiry": _iso(now + timedelta(days=700)),
        },
        {
            "address": "qingyuan.yangshan.libu",
            "name": "阳山县黎埠镇人民政府",
            "kind": "township",
            "state": "enabled",
            "phase": "dual_track",
            "last_seen": _iso(now - timedelta(hours=5)),
            "online": False,
            "sent": 3,
            "received": 88,
            "signed_for_on_time": 60,
            "returned": 4,
            "cert_expiry": _iso(now + timedelta(days=12)),
        },
    ]
    dead = [dead_letter(i, now - timedelta(minutes=i)) for i in range(1, 61)]
    links = [{"name": "parent", "state": "up", "backlog": 0}]
    return {"documents": [notice, other], "units": units, "now": now, "dead_letters": dead, "links": links}


def dead_letter(n: int, at: datetime) -> dict[str, Any]:
    """Dead letter #n as /api/dead-letters gives it: a copy for a unit that its agent failed
    on (odd n) or a document the hub's own intake could not take in (even n)."""
    copy = n % 2 == 1
    return {
        "id": n, "at": _iso(at.astimezone(timezone(timedelta(hours=8)))),
        "message_id": f"d0000000-0000-4000-8000-{n:012d}", "kind": "document",
        "queue": "unit.qingyuan.yangshan.libu" if copy else "hub.ingress",
        "sender": "qingyuan.yangshan.zfb", "sender_name": "阳山县人民政府办公室",
        "sender_login": "qingyuan.yangshan.zfb",
        "recipient": "qingyuan.yangshan.libu" if copy else "",
        "recipient_name": "阳山县黎埠镇人民政府" if copy else "",
        "doc_number": f"阳府办〔2011〕{n}号" if copy else "", "title": "关于防汛工作的通知" if copy else "",
        "code": "dead_letter", "code_zh": "消息多次处理失败，已转入死信队列",
        "code_en": "a message failed repeatedly and was dead-lettered",
        "reason": "unit.qingyuan.yangshan.libu: delivery_limit" if copy else "hub.ingress: delivery_limit",
        "tries": 11, "replayed": False, "kept": True,
        "replay": f"docex hub dead-letters replay --home /srv/docex/hub {n}",
    }


class DashboardStub:
    """Start with `with DashboardStub() as stub:`; `stub.url`, `stub.requests`,
    `stub.set_state(message_id, address, state)`."""

    def __init__(self) -> None:
        self.data = canned()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path))
                stub.get(self)

            def do_POST(self) -> None:
                stub.requests.append(("POST", self.path))
                stub.post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DashboardStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def set_state(self, message_id: str, address: str, state: str) -> None:
        with self.lock:
            doc = self._doc(message_id)
            assert doc is not None
            for r in doc["recipients"]:
                if r["address"] == address:
                    r["state"] = state
                    r[f"{state}_at"] = _iso(datetime.now(UTC).replace(microsecond=0))
                    doc["receipts"].append(
                        {
                            "recipient": address,
                            "event": state,
                            "at": r[f"{state}_at"],
                            "reason": None,
                        }
                    )

    # --- HTTP ---
    def _doc(self, message_id: str) -> dict[str, Any] | None:
        return next((d for d in self.data["documents"] if d["message_id"] == message_id), None)

    def get(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        name = url.path.lstrip("/") or "index.html"
        if name in FILES:
            body = (DASHBOARD_DIR / name).read_bytes()
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self._send(h, 200, body, f"{ctype}; charset=utf-8")
        if not url.path.startswith("/api/"):
            return self._json(h, 404, {"error": "not_found"})
        if SESSION not in (h.headers.get("Cookie") or ""):
            return self._json(h, 401, {"error": "login_required"})
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            payload = self._api(url.path, query)
        if payload is None:
            return self._json(h, 404, {"error": "not_found"})
        self._json(h, 200, payload)

    def _api(self, path: str, query: dict[str, str]) -> dict[str, Any] | None:
        docs = self.data["documents"]
        now = datetime.now(UTC)
        open_states = ("accepted", "routed", "delivered")

        def overdue(d: dict[str, Any]) -> list[dict[str, Any]]:
            late = d.get("deadline") and datetime.fromisoformat(d["deadline"]) < now
            return [r for r in d["recipients"] if late and r["state"] in open_states]

        if path == "/api/overview":
            states = [r["state"] for d in docs for r in d["recipients"]]
            return {
                "documents_today": len(docs),
                "pending_sign_for": states.count("delivered"),
                "overdue": sum(len(overdue(d)) for d in docs),
                "today": now.astimezone(timezone(timedelta(hours=8))).date().isoformat(),
                "timezone": "Asia/Shanghai (UTC+08:00)",
                "units_total": 125,
                "units_offline": 7,
                "links": copy.deepcopy(self.data["links"]),
                "dead_letters": len(self.data["dead_letters"]),
                "generated_at": _iso(datetime.now(UTC)),
            }
        if path == "/api/documents":
            q = query.get("q", "")
            items = [
                self._summary(d)
                for d in docs
                if (not q or q in d["doc_number"] or q in d["title"])
                and query.get("sender", d["sender"]) == d["sender"]
                and (query.get("overdue") != "true" or overdue(d))
                and (query.get("pending") != "true"
                     or any(r["state"] in ("routed", "delivered") for r in d["recipients"]))
            ]
            return {"items": items[: int(query.get("limit", "100"))]}
        if path.startswith("/api/documents/"):
            doc = self._doc(unquote(path.removeprefix("/api/documents/")))
            return copy.deepcopy(doc) if doc else None
        if path == "/api/units":
            return {"items": copy.deepcopy(self.data["units"])}
        if path == "/api/dead-letters":
            offset, limit = int(query.get("offset", "0")), min(200, int(query.get("limit", "50")))
            dead = self.data["dead_letters"]
            return {"items": copy.deepcopy(dead[offset: offset + limit]), "total": len(dead),
                    "offset": offset, "limit": limit}
        return None

    @staticmethod
    def _summary(doc: dict[str, Any]) -> dict[str, Any]:
        states: dict[str, int] = {}
        for r in doc["recipients"]:
            states[r["state"]] = states.get(r["state"], 0) + 1
        keys = (
            "message_id",
            "doc_number",
            "title",
            "sender",
            "sender_name",
            "priority",
            "classification",
            "created_at",
        )
        return {
            **{k: doc[k] for k in keys},
            "recipients_total": len(doc["recipients"]),
            "states": states,
            "flags": [f for f in ("paper_route", "rejected") if states.get(f)],
        }

    def post(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        if path == "/logout":
            h.send_response(303)
            h.send_header("Location", "/")
            h.send_header("Set-Cookie", "docex_session=; Path=/; Max-Age=0")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if path != "/login":
            return self._json(h, 404, {"error": "not_found"})
        length = int(h.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(h.rfile.read(length).decode()).items()}
        ok = form.get("username") == USER and form.get("password") == PASSWORD
        h.send_response(303)
        h.send_header("Location", "/" if ok else "/?login_failed=1")
        if ok:
            h.send_header("Set-Cookie", f"{SESSION}; Path=/; HttpOnly; SameSite=Strict")
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _json(self, h: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        self._send(
            h,
            status,
            json.dumps(payload, ensure_ascii=False).encode(),
            "application/json; charset=utf-8",
        )

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Cache-Control", "no-store")
        h.end_headers()
        h.wfile.write(body)
