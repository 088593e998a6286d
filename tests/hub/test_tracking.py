"""The read side: one document's recipients, document lists and their filters, per-unit
statistics and the overview (what `docex track`, `docex documents`, the API and the
dashboard show). Rows are written directly: the queries are what is tested."""

from __future__ import annotations

import datetime as dt

import pytest

from docex.hub import states
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.models import Delivery, Document, Receipt, Unit, utcnow
from docex.hub.tracking import DocumentQuery, document_detail, list_documents, overview, unit_stats

XXZX, ZFB, XWB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.xwb"
NOW = utcnow()


def _doc(message_id: str, *, sender: str = XXZX, title: str = "关于防汛的通知", doc_number: str = "阳府办〔2011〕1号",
         accepted: dt.datetime = NOW, deadline_hours: float = 4.0) -> Document:
    return Document(message_id=message_id, sender=sender, title=title, doc_number=doc_number, priority="特急",
                    envelope_sha256="0" * 64, created_at=accepted, accepted_at=accepted,
                    deadline=accepted + dt.timedelta(hours=deadline_hours))


@pytest.fixture
def seeded(db: Database) -> Database:
    early = NOW - dt.timedelta(days=40)
    with db.session() as s:
        s.add_all([
            Unit(address=XXZX, name="阳山县信息中心", last_seen=utcnow()),  # a heartbeat just now
            Unit(address=ZFB, name="阳山县人民政府办公室", last_seen=utcnow() - dt.timedelta(hours=2)),
            Unit(address=XWB, name="中共阳山县委办公室", state="disabled"),
            _doc("m1"), _doc("m2", title="关于年度总结的通知", doc_number="阳办发〔2011〕42号", sender=ZFB),
            _doc("m0", accepted=early, title="旧文"),
        ])
        s.flush()
        s.add_all([
            Delivery(message_id="m1", recipient=ZFB, state=states.SIGNED_FOR, accepted_at=NOW,
                     delivered_at=NOW, signed_for_at=NOW + dt.timedelta(hours=1), person="张三"),
            Delivery(message_id="m1", recipient=XWB, state=states.RETURNED, reason="非本单位职责", returned_at=NOW),
            Delivery(message_id="m2", recipient=XXZX, state=states.DELIVERED, delivered_at=NOW),
            Delivery(message_id="m0", recipient=ZFB, state=states.SIGNED_FOR, signed_for_at=early + dt.timedelta(hours=9)),
            Receipt(message_id="m1", recipient=ZFB, event="delivered", at=NOW, der=b"r1"),
            Receipt(message_id="m1", recipient=ZFB, event="signed_for", at=NOW, der=b"r2"),
        ])
    return db


def test_document_detail_lists_each_recipient_with_names_times_and_receipts(seeded: Database) -> None:
    with seeded.read() as s:
        d = document_detail(s, "m1")
        assert document_detail(s, "nope") is None
    assert d is not None
    assert (d["sender_name"], d["priority"], d["doc_number"]) == ("阳山县信息中心", "特急", "阳府办〔2011〕1号")
    by = {r["address"]: r for r in d["recipients"]}
    assert by[ZFB]["state"] == "signed_for" and by[ZFB]["person"] == "张三" and by[ZFB]["signed_for_at"]
    assert by[XWB]["state"] == "returned" and by[XWB]["reason"] == "非本单位职责"
    assert by[XWB]["name"] == "中共阳山县委办公室"
    assert [r["event"] for r in d["receipts"]] == ["delivered", "signed_for"]


def test_document_lists_filter_by_unit_state_text_and_dates(seeded: Database) -> None:
    def ids(**query: object) -> list[str]:
        with seeded.read() as s:
            return [d["message_id"] for d in list_documents(s, DocumentQuery(**query))]  # type: ignore[arg-type]

    assert set(ids()) == {"m0", "m1", "m2"} and ids()[-1] == "m0"  # newest first
    assert set(ids(unit=ZFB)) == {"m1", "m2", "m0"}  # as sender or recipient
    assert ids(unit=XWB) == ["m1"]
    assert ids(sender=ZFB) == ["m2"]
    assert ids(state="returned") == ["m1"]
    assert ids(q="年度总结") == ["m2"] and ids(q="42号") == ["m2"] and ids(q="m0") == ["m0"]
    assert "m0" not in ids(date_from=(NOW - dt.timedelta(days=1)).date())
    assert ids(date_to=(NOW - dt.timedelta(days=30)).date()) == ["m0"]
    assert len(ids(limit=1)) == 1
    with seeded.read() as s:
        m1 = next(d for d in list_documents(s, DocumentQuery()) if d["message_id"] == "m1")
    assert m1["recipients_total"] == 2 and m1["states"] == {"signed_for": 1, "returned": 1}


def test_unit_statistics_count_received_signed_on_time_and_pending(seeded: Database) -> None:
    with seeded.read() as s:
        stats = {u.address: u for u in unit_stats(s, online_seconds=120)}
        month = {u.address: u for u in unit_stats(s, online_seconds=120, since=NOW - dt.timedelta(days=1))}
    assert stats[ZFB].received == 2 and stats[ZFB].signed_for == 2 and stats[ZFB].signed_for_on_time == 1
    assert stats[XWB].returned == 1 and stats[XWB].state == "disabled"
    assert stats[XXZX].sent == 2 and stats[XXZX].pending == 1 and stats[XXZX].online
    assert not stats[ZFB].online  # last heartbeat two hours ago
    assert month[ZFB].received == 1 and month[XXZX].sent == 1  # the old document is outside the window


def test_overview_counts_today_pending_and_overdue(seeded: Database, ctx: HubContext) -> None:
    with seeded.read() as s:
        view = overview(s, online_seconds=120)
    assert view["pending_sign_for"] == 1  # m2 delivered to the centre, not yet signed for
    assert view["units_total"] == 3 and view["units_offline"] == 1  # ZFB; XWB is disabled
    assert view["overdue"] == 0
    with seeded.session() as s:
        s.add(_doc("late", accepted=NOW - dt.timedelta(hours=6)))
        s.flush()
        s.add(Delivery(message_id="late", recipient=ZFB, state=states.ROUTED))
    with seeded.read() as s:
        assert overview(s, online_seconds=120)["overdue"] == 1
        # the card's count is the list it opens
        assert [d["message_id"] for d in list_documents(s, DocumentQuery(overdue=True))] == ["late"]
        assert {d["message_id"] for d in list_documents(s, DocumentQuery(pending=True))} == {"m2", "late"}
