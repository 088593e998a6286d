"""Usage reports for the yearly assessment (年度考核): per unit, documents sent and
received, signed for on time, returned, still pending, and the rollout phase. Written
as CSV (opens in WPS/Excel, UTF-8 with BOM) and a printable HTML page, Chinese first."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from pathlib import Path

from docex.hub.context import HubContext
from docex.hub.tracking import UnitStats, unit_stats
from docex.protocols import glossary, localtime

PHASE_ZH = glossary.zh(glossary.PHASES)
COLUMNS = [
    ("address", "单位地址"), ("name", "单位名称"), ("phase", "推行阶段"), ("sent", "发文数"),
    ("received", "收文数"), ("signed_for", "签收数"), ("signed_for_on_time", "按时签收数"),
    ("on_time_rate", "按时签收率"), ("returned", "退回数"), ("pending", "待签收"),
]


def _rows(stats: list[UnitStats]) -> list[dict[str, object]]:
    rows = []
    for u in stats:
        rate = f"{u.signed_for_on_time / u.received:.0%}" if u.received else "—"
        rows.append({
            "address": u.address, "name": u.name, "phase": PHASE_ZH.get(u.phase, u.phase), "sent": u.sent,
            "received": u.received, "signed_for": u.signed_for, "signed_for_on_time": u.signed_for_on_time,
            "on_time_rate": rate, "returned": u.returned, "pending": u.pending,
        })
    return rows


def build_report(ctx: HubContext, start: dt.date, end: dt.date) -> dict[str, object]:
    """`start` to `end`, both days included, in local calendar days."""
    since, until = localtime.day_range(start, end)
    with ctx.db.read() as s:
        stats = unit_stats(s, online_seconds=ctx.config.limits.heartbeat_online_seconds, since=since, until=until)
    rows = _rows(stats)
    return {"hub": ctx.config.prefix, "name": ctx.config.name, "from": start.isoformat(), "to": end.isoformat(), "units": rows}


def to_csv(report: dict[str, object]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([zh for _, zh in COLUMNS])
    for row in report["units"]:  # type: ignore[attr-defined]
        writer.writerow([row[key] for key, _ in COLUMNS])
    return "\ufeff" + buf.getvalue()


def to_html(report: dict[str, object]) -> str:
    head = "".join(f"<th>{html.escape(zh)}</th>" for _, zh in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[key]))}</td>" for key, _ in COLUMNS) + "</tr>"
        for row in report["units"]  # type: ignore[attr-defined]
    )
    title = f"{report['name']} 电子公文交换使用情况报告（{report['from']} 至 {report['to']}）"
    return (
        f"<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:'Noto Sans CJK SC',sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px}</style>"
        f"<h1>{html.escape(title)}</h1><table><tr>{head}</tr>{body}</table></html>"
    )


def write_report(ctx: HubContext, start: dt.date, end: dt.date, out_dir: Path | None = None) -> Path:
    report = build_report(ctx, start, end)
    folder = out_dir or ctx.config.home / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"usage-{start.isoformat()}-{end.isoformat()}"
    stem.with_suffix(".csv").write_text(to_csv(report), "utf-8")
    stem.with_suffix(".html").write_text(to_html(report), "utf-8")
    stem.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
    return stem.with_suffix(".csv")
