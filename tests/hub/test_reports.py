"""Usage reports for the yearly assessment: Chinese headers, per-unit counts, CSV that
opens in WPS/Excel (UTF-8 with BOM), a printable HTML page, and the JSON beside them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

from docex.hub import states
from docex.hub.context import HubContext
from docex.hub.db import Database
from docex.hub.models import Delivery, Document, Unit, utcnow
from docex.hub.reports import build_report, to_csv, to_html, write_report

XXZX, ZFB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"


def _seed(db: Database, day: dt.datetime) -> None:
    with db.session() as s:
        s.add_all([Unit(address=XXZX, name="阳山县信息中心", phase="electronic"),
                   Unit(address=ZFB, name="<县府办>", phase="dual_track")])
        s.add(Document(message_id="m1", sender=XXZX, title="通知", doc_number="1号", envelope_sha256="0" * 64,
                       created_at=day, accepted_at=day, deadline=day + dt.timedelta(hours=4)))
        s.flush()
        s.add(Delivery(message_id="m1", recipient=ZFB, state=states.SIGNED_FOR, signed_for_at=day + dt.timedelta(hours=1)))


def test_report_rows_and_formats(ctx: HubContext, db: Database, tmp_path: Path) -> None:
    day = utcnow().replace(hour=2)
    _seed(db, day)
    report = build_report(ctx, day.date(), day.date() + dt.timedelta(days=1))
    rows = {r["address"]: r for r in report["units"]}  # type: ignore[attr-defined]
    assert rows[XXZX]["sent"] == 1 and rows[XXZX]["phase"] == "全面电子化"
    assert rows[ZFB]["received"] == 1 and rows[ZFB]["signed_for_on_time"] == 1 and rows[ZFB]["on_time_rate"] == "100%"
    assert rows[ZFB]["phase"] == "双轨运行" and rows[XXZX]["on_time_rate"] == "—"

    text = to_csv(report)
    assert text.startswith("\ufeff")
    table = list(csv.reader(io.StringIO(text[1:])))
    assert table[0][:3] == ["单位地址", "单位名称", "推行阶段"] and len(table) == 3
    page = to_html(report)
    assert "&lt;县府办&gt;" in page and "<县府办>" not in page and "使用情况报告" in page

    path = write_report(ctx, day.date(), day.date() + dt.timedelta(days=1), tmp_path / "out")
    assert path.suffix == ".csv" and path.with_suffix(".html").exists()
    assert json.loads(path.with_suffix(".json").read_text("utf-8"))["hub"] == ctx.config.prefix


def test_a_period_without_documents_reports_zeros(ctx: HubContext, db: Database) -> None:
    day = utcnow()
    _seed(db, day)
    report = build_report(ctx, dt.date(2011, 8, 1), dt.date(2011, 9, 1))
    assert all(r["sent"] == 0 and r["received"] == 0 for r in report["units"])  # type: ignore[attr-defined]
