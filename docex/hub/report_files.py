"""The assessment report as the information centre hands it on: an XLSX workbook (the
table with its totals row, the weights used, and a sheet of bar charts) and a printable A4 PDF with the table,
the county ranking and bar charts (on-time sign-for rate, volumes, returns, days offline),
drawn with fpdf2 in the Noto CJK faces the documents use."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from fpdf import FPDF

from docex.pki.fonts import FontRole, font_face

Columns = Sequence[tuple[str, str]]
BAR = (192, 0, 0)  # 公文 red
BAR2 = (90, 90, 90)


def _title(report: dict[str, object]) -> str:
    return f"{report['name']} 电子公文交换年度考核报告（{report['from']} 至 {report['to']}，含首尾两日）"


def to_xlsx(report: dict[str, object], columns: Columns) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "考核汇总"
    ws.append([_title(report)])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([f"生成时间 {report.get('generated_at', '')}（{report.get('timezone', '')}）"])
    ws.append([zh for _, zh in columns])
    for cell in ws[3]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="F2DCDB")
        cell.alignment = Alignment(horizontal="center")
    units: list[dict[str, object]] = report["units"]  # type: ignore[assignment]
    for row in units:
        ws.append([row[key] for key, _ in columns])
    ws.append([report["totals"][key] for key, _ in columns])  # type: ignore[index]
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "C4"
    for i, (key, zh) in enumerate(columns, 1):
        width = max([len(zh) * 2 + 2] + [len(str(r[key])) + 2 for r in units])
        ws.column_dimensions[get_column_letter(i)].width = min(max(width, 8), 40)
    methods = wb.create_sheet("考核办法")
    methods.append(["考核项", "权重（分）"])
    weights: dict[str, float] = report["weights"]  # type: ignore[assignment]
    from docex.hub.reports import WEIGHT_NAMES

    for key, weight in weights.items():
        methods.append([WEIGHT_NAMES.get(key, key), weight])
    methods.column_dimensions["A"].width = 48
    _xlsx_charts(wb.create_sheet("图表"), units)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


CHARTS: tuple[tuple[str, str, Callable[[dict[str, object]], float]], ...] = (
    ("考核得分", "0.0", lambda r: float(r["score"])),  # type: ignore[arg-type]
    ("按时签收率", "0%", lambda r: int(r["signed_for_on_time"]) / int(r["received"]) if int(r["received"]) else 0.0),  # type: ignore[call-overload]
    ("收发文数量（发文+收文）", "0", lambda r: float(int(r["sent"]) + int(r["received"]))),  # type: ignore[call-overload]
    ("退回数", "0", lambda r: float(int(r["returned"]))),  # type: ignore[call-overload]
    ("当前离线天数", "0", lambda r: float(max(int(r["days_offline"]), 0))),  # type: ignore[call-overload]
)


def _xlsx_charts(ws: object, units: list[dict[str, object]]) -> None:
    """A sheet with one column per measure (units in ranking order) and a bar chart of each."""
    from openpyxl.chart import BarChart, Reference

    ranked = sorted(units, key=lambda r: int(r["rank"]))  # type: ignore[call-overload]
    ws.append(["单位名称", *(title for title, _, _ in CHARTS)])  # type: ignore[attr-defined]
    for r in ranked:
        ws.append([str(r["name"]), *(value(r) for _, _, value in CHARTS)])  # type: ignore[attr-defined]
    ws.column_dimensions["A"].width = 30  # type: ignore[attr-defined]
    last = len(ranked) + 1
    for i, (title, number_format, _) in enumerate(CHARTS, start=2):
        for row in range(2, last + 1):
            ws.cell(row, i).number_format = number_format  # type: ignore[attr-defined]
        chart = BarChart()
        chart.type, chart.title, chart.legend = "bar", title, None
        chart.height, chart.width = max(6.0, 0.6 * len(ranked) + 2), 16.0
        chart.add_data(Reference(ws, min_col=i, min_row=1, max_row=last), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=last))
        chart.y_axis.numFmt = number_format
        chart.x_axis.scaling.orientation = "maxMin"  # first ranked at the top
        ws.add_chart(chart, f"H{2 + (i - 2) * (int(chart.height * 2) + 2)}")  # type: ignore[attr-defined]


class _Pdf(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("song", size=8)
        self.cell(0, 6, f"第 {self.page_no()} 页", align="C")


def _chart(pdf: _Pdf, title: str, rows: list[dict[str, object]], value: Callable[[dict[str, object]], float],
           label: Callable[[float], str], colour: tuple[int, int, int] = BAR) -> None:
    """One horizontal bar per unit, scaled to the largest value."""
    top = max((value(r) for r in rows), default=0.0) or 1.0
    name_w, bar_w, line = 62.0, pdf.epw - 62.0 - 22.0, 5.2
    if pdf.get_y() + 14 + line * min(len(rows), 6) > pdf.page_break_trigger:
        pdf.add_page()
    pdf.set_font("hei", size=12)
    pdf.cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("song", size=8)
    for r in rows:
        if pdf.get_y() + line > pdf.page_break_trigger:
            pdf.add_page()
            pdf.set_font("song", size=8)
        x, y = pdf.l_margin, pdf.get_y()
        pdf.set_xy(x, y)
        pdf.cell(name_w, line, str(r["name"])[:18], align="R")
        v = value(r)
        pdf.set_fill_color(*colour)
        if v > 0:
            pdf.rect(x + name_w + 2, y + 1, bar_w * v / top, line - 2, style="F")
        pdf.set_xy(x + name_w + 4 + bar_w * max(v, 0) / top, y)
        pdf.cell(20, line, label(v))
        pdf.set_xy(x, y + line)
    pdf.ln(4)


def to_pdf(report: dict[str, object], columns: Columns) -> bytes:
    pdf = _Pdf(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(True, 16)
    for family, role in (("song", FontRole.SONG), ("hei", FontRole.HEI)):
        face = font_face(role)
        pdf.add_font(family, "", str(face.path), collection_font_number=face.index)
    pdf.set_lang("zh-CN")
    pdf.set_title(_title(report))
    pdf.add_page()
    pdf.set_font("hei", size=16)
    pdf.multi_cell(0, 10, _title(report), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("song", size=9)
    weights: dict[str, float] = report["weights"]  # type: ignore[assignment]
    from docex.hub.reports import WEIGHT_NAMES

    method = "；".join(f"{WEIGHT_NAMES.get(k, k)} {w:g} 分" for k, w in weights.items())
    pdf.multi_cell(0, 5, f"考核办法：{method}。生成时间 {report.get('generated_at', '')}（{report.get('timezone', '')}）。",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    units: list[dict[str, object]] = report["units"]  # type: ignore[assignment]
    shown = [c for c in columns if c[0] != "address"]
    widths = {"name": 58.0, "phase": 20.0, "days_offline": 20.0}
    rest = (pdf.epw - sum(widths.values())) / (len(shown) - len(widths))
    from fpdf.fonts import FontFace

    pdf.set_font("song", size=8)
    heading = FontFace(family="hei", emphasis="", fill_color=(242, 220, 219))
    with pdf.table(col_widths=[widths.get(k, rest) for k, _ in shown], text_align="CENTER", line_height=5.5,
                   headings_style=heading) as table:
        table.row([zh for _, zh in shown])
        for row in [*units, report["totals"]]:  # type: ignore[list-item]
            table.row([str(row[k]) if row[k] != -1 else "从未上线" for k, _ in shown])  # type: ignore[index]
    pdf.add_page()
    ranked = sorted(units, key=lambda r: int(r["rank"]))  # type: ignore[call-overload]
    labels: tuple[Callable[[float], str], ...] = (lambda v: f"{v:g}", lambda v: f"{v:.0%}", lambda v: f"{v:g}",
                                                  lambda v: f"{v:g}", lambda v: f"{v:g} 天")
    for i, ((title, _, value), label) in enumerate(zip(CHARTS, labels, strict=True)):
        _chart(pdf, "全县排名：" + title if i == 0 else title, ranked, value, label, BAR if i < 2 else BAR2)
    return bytes(pdf.output())
