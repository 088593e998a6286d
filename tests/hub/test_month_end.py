"""The hub's calendar runs on local time: a controlled clock crosses 30 November ->
1 December (Asia/Shanghai, UTC+8) and the monthly report job writes November's report,
counting documents by their local day; "today" on the overview starts at local midnight."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest

from docex.hub import states
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.jobs import HubJobs
from docex.hub.models import Delivery, Document, Unit
from docex.hub.tracking import DocumentQuery, list_documents, overview
from docex.protocols import localtime

XXZX, ZFB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"
UTC = dt.UTC


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    yield
    localtime.set_clock(None)


def _doc(db: Database, message_id: str, at: dt.datetime) -> None:
    with db.session() as s:
        if s.get(Unit, XXZX) is None:
            s.add_all([Unit(address=XXZX, name="信息中心"), Unit(address=ZFB, name="县府办")])
        s.add(Document(message_id=message_id, sender=XXZX, title=message_id, doc_number=message_id,
                       envelope_sha256="0" * 64, created_at=at, accepted_at=at, deadline=at + dt.timedelta(hours=4)))
        s.flush()
        s.add(Delivery(message_id=message_id, recipient=ZFB, state=states.SIGNED_FOR,
                       signed_for_at=at + dt.timedelta(hours=1)))


def test_monthly_report_on_1_december_covers_november(ctx: HubContext, db: Database) -> None:
    _doc(db, "oct-local", dt.datetime(2026, 10, 31, 15, 0, tzinfo=UTC))      # 31 Oct 23:00 local
    _doc(db, "nov-first", dt.datetime(2026, 10, 31, 17, 0, tzinfo=UTC))      # 1 Nov 01:00 local
    _doc(db, "nov-last", dt.datetime(2026, 11, 30, 15, 30, tzinfo=UTC))      # 30 Nov 23:30 local
    _doc(db, "dec-first", dt.datetime(2026, 11, 30, 16, 30, tzinfo=UTC))     # 1 Dec 00:30 local (still 30 Nov in UTC)

    localtime.set_clock(lambda: dt.datetime(2026, 11, 30, 17, 0, tzinfo=UTC))  # 1 Dec 01:00 local, when the job runs
    path = HubJobs(ctx).monthly_report()
    assert path.name == "usage-2026-11-01-2026-11-30.csv"
    report = json.loads(path.with_suffix(".json").read_text("utf-8"))
    assert (report["from"], report["to"]) == ("2026-11-01", "2026-11-30")
    rows = {r["address"]: r for r in report["units"]}
    assert rows[XXZX]["sent"] == 2 and rows[ZFB]["signed_for_on_time"] == 2  # nov-first and nov-last only

    # "today" is the local day: at 01:00 on 1 December only dec-first counts
    with db.read() as s:
        assert overview(s, online_seconds=120)["documents_today"] == 1
        found = list_documents(s, DocumentQuery(date_from=dt.date(2026, 12, 1), date_to=dt.date(2026, 12, 1)))
        assert [d["message_id"] for d in found] == ["dec-first"]
        assert found[0]["accepted_at"] == "2026-12-01T00:30:00+08:00"

    localtime.set_clock(lambda: dt.datetime(2026, 11, 30, 15, 0, tzinfo=UTC))  # an hour earlier: still November
    assert HubJobs(ctx).monthly_report().name == "usage-2026-10-01-2026-10-31.csv"


def test_the_report_job_fires_on_the_first_at_one_in_the_morning_local_time(ctx: HubContext) -> None:
    """The scheduler runs on local time: from midday 30 November (UTC) the report job's next
    run is 1 December 01:00 +08:00, i.e. 30 November 17:00 UTC, when the clock of the test
    above stands, so the report it writes is November's."""
    from docex.hub.jobs import build_scheduler

    scheduler = build_scheduler(HubJobs(ctx))
    job = scheduler.get_job("report")
    assert job is not None
    fire = job.trigger.get_next_fire_time(None, dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    assert fire.isoformat() == "2026-12-01T01:00:00+08:00"
    assert fire.astimezone(UTC) == dt.datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
