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
    assert table[0][:3] == ["单位地址", "单位名称", "推行阶段"] and len(table) == 4  # two units and the totals
    assert table[-1][0] == "合计" and table[-1][3] == "1"
    page = to_html(report)
    assert "&lt;县府办&gt;" in page and "<县府办>" not in page and "使用情况报告" in page

    path = write_report(ctx, day.date(), day.date() + dt.timedelta(days=1), tmp_path / "out")
    assert path.suffix == ".csv" and path.with_suffix(".html").exists()
    assert path.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    from openpyxl import load_workbook

    book = load_workbook(path.with_suffix(".xlsx"))
    sheet = book["考核汇总"]
    assert sheet.cell(3, 1).value == "单位地址" and sheet.cell(sheet.max_row, 1).value == "合计"
    assert [c.value for c in book["考核办法"]["B"]][1:] == [60, 20, 10, 10]
    charts = book["图表"]
    assert [c.value for c in charts[1]] == ["单位名称", "考核得分", "按时签收率", "收发文数量（发文+收文）", "退回数",
                                           "当前离线天数"]
    assert charts.max_row == 3 and {charts.cell(r, 1).value for r in (2, 3)} == {"阳山县信息中心", "<县府办>"}
    drawn = load_workbook_charts(path.with_suffix(".xlsx"))
    assert drawn == ["考核得分", "按时签收率", "收发文数量（发文+收文）", "退回数", "当前离线天数"]

    # the printable PDF: title with both days, the table with its totals row, the weights,
    # the ranking and a bar chart of each measure
    import pdfplumber
    import pypdfium2

    document = pypdfium2.PdfDocument(path.with_suffix(".pdf"))  # pdfminer does not map these CID fonts back
    try:
        text = "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()
    with pdfplumber.open(path.with_suffix(".pdf")) as pdf:
        bars = sum(len(page.rects) for page in pdf.pages[1:])
    for words in ("含首尾两日", "合计", "考核办法", "按时签收率 60 分", "全县排名：考核得分", "按时签收率", "收发文数量",
                  "退回数", "当前离线天数", "阳山县信息中心", "<县府办>"):
        assert words in text, words
    assert bars >= 4  # score x2, on-time x1, volumes x2 (zero bars are not drawn)
    assert json.loads(path.with_suffix(".json").read_text("utf-8"))["hub"] == ctx.config.prefix


def test_a_period_without_documents_reports_zeros(ctx: HubContext, db: Database) -> None:
    day = utcnow()
    _seed(db, day)
    report = build_report(ctx, dt.date(2011, 8, 1), dt.date(2011, 9, 1))
    assert all(r["sent"] == 0 and r["received"] == 0 for r in report["units"])  # type: ignore[attr-defined]


def test_weights_decide_the_ranking(ctx: HubContext, db: Database) -> None:
    """考核办法 from the hub config: with all the weight on usage, the unit that sent the
    document ranks first; with all of it on on-time sign-for, both score full marks."""
    day = utcnow().replace(hour=2)
    _seed(db, day)
    usage = ctx.config.with_changes(assessment={"on_time": 0, "usage": 100, "returns": 0, "online": 0})
    report = build_report(HubContext(usage, db, identity=None), day.date(), day.date())  # type: ignore[arg-type]
    ranks = {r["address"]: (r["rank"], r["score"]) for r in report["units"]}  # type: ignore[attr-defined]
    assert ranks[XXZX] == (1, 100.0) and ranks[ZFB] == (1, 100.0)  # one sent, one received: equal use
    on_time = ctx.config.with_changes(assessment={"on_time": 100, "usage": 0, "returns": 0, "online": 0})
    report = build_report(HubContext(on_time, db, identity=None), day.date(), day.date())  # type: ignore[arg-type]
    assert {r["score"] for r in report["units"]} == {100.0}  # type: ignore[attr-defined]
    assert report["totals"]["received"] == 1  # type: ignore[index]


def load_workbook_charts(path: Path) -> list[str]:
    """The titles of the bar charts in the workbook's 图表 sheet, read from the file's XML
    (openpyxl does not read charts back)."""
    import re
    import zipfile

    with zipfile.ZipFile(path) as z:
        names = sorted((n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)),
                       key=lambda n: int(re.findall(r"\d+", n)[0]))
        titles = []
        for name in names:
            xml = z.read(name).decode("utf-8")
            assert "<barChart>" in xml and "<barDir val=\"bar\"/>" in xml
            titles.append("".join(re.findall(r"<a:t>([^<]*)</a:t>", xml)))
    return titles
