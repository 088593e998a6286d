"""Usage reports for the yearly assessment (年度考核): per unit, documents sent and
received, signed for on time, returned, still pending, days offline and the rollout phase,
a score under the county's weights (考核办法, `[assessment]` in the hub config), the county
ranking and a totals row. Written as CSV (opens in WPS/Excel, UTF-8 with BOM), XLSX, a
printable HTML page and a printable PDF with bar charts (report_files.py), Chinese first."""

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
    ("days_offline", "当前离线天数"), ("score", "考核得分"), ("rank", "排名"),
]
# 考核办法: the score's parts and their weights (points); the hub config may override them
DEFAULT_WEIGHTS = {"on_time": 60.0, "usage": 20.0, "returns": 10.0, "online": 10.0}
WEIGHT_NAMES = {"on_time": "按时签收率", "usage": "系统使用量（收发文数占全县最多单位的比例）",
                "returns": "未被退回比例（1 − 退回数/收文数）", "online": "终端在线（离线天数占考核期比例的补数）"}


def _days_offline(u: UnitStats, now: dt.datetime) -> int:
    if u.online:
        return 0
    if not u.last_seen:
        return -1  # never seen
    return max(0, (now - dt.datetime.fromisoformat(u.last_seen)).days)


def assess(rows: list[dict[str, object]], weights: dict[str, float], period_days: int) -> None:
    """Add each unit's score and county rank (1 = best; ties share a rank)."""
    most = max((int(r["sent"]) + int(r["received"]) for r in rows), default=0)  # type: ignore[call-overload]
    for r in rows:
        received, sent = int(r["received"]), int(r["sent"])  # type: ignore[call-overload]
        on_time = int(r["signed_for_on_time"]) / received if received else 1.0  # type: ignore[call-overload]
        usage = (sent + received) / most if most else 0.0
        returns = 1 - int(r["returned"]) / received if received else 1.0  # type: ignore[call-overload]
        offline = int(r["days_offline"])  # type: ignore[call-overload]
        online = 0.0 if offline < 0 else max(0.0, 1 - offline / max(period_days, 1))
        parts = {"on_time": on_time, "usage": usage, "returns": returns, "online": online}
        r["score"] = round(sum(weights.get(k, 0.0) * v for k, v in parts.items()), 1)
    ordered = sorted(rows, key=lambda r: -float(r["score"]))  # type: ignore[arg-type]
    for i, r in enumerate(ordered):
        same = i and ordered[i - 1]["score"] == r["score"]
        r["rank"] = ordered[i - 1]["rank"] if same else i + 1


def totals(rows: list[dict[str, object]]) -> dict[str, object]:
    total: dict[str, object] = {key: sum(int(r[key]) for r in rows)  # type: ignore[call-overload]
                                for key in ("sent", "received", "signed_for", "signed_for_on_time", "returned", "pending")}
    received = int(total["received"])  # type: ignore[call-overload]
    total.update({"address": "合计", "name": f"合计（{len(rows)} 个单位）", "phase": "",
                  "on_time_rate": f"{int(total['signed_for_on_time']) / received:.0%}" if received else "—",  # type: ignore[call-overload]
                  "days_offline": "", "score": "", "rank": ""})
    return total


def _rows(stats: list[UnitStats]) -> list[dict[str, object]]:
    rows = []
    now = localtime.utcnow()
    for u in stats:
        rate = f"{u.signed_for_on_time / u.received:.0%}" if u.received else "—"
        rows.append({
            "address": u.address, "name": u.name, "phase": PHASE_ZH.get(u.phase, u.phase), "sent": u.sent,
            "received": u.received, "signed_for": u.signed_for, "signed_for_on_time": u.signed_for_on_time,
            "on_time_rate": rate, "returned": u.returned, "pending": u.pending, "days_offline": _days_offline(u, now),
        })
    return rows


def build_report(ctx: HubContext, start: dt.date, end: dt.date) -> dict[str, object]:
    """`start` to `end`, both days included, in local calendar days."""
    since, until = localtime.day_range(start, end)
    with ctx.db.read() as s:
        stats = unit_stats(s, online_seconds=ctx.config.limits.heartbeat_online_seconds, since=since, until=until)
    rows = _rows(stats)
    weights = {**DEFAULT_WEIGHTS, **ctx.config.assessment}
    assess(rows, weights, (end - start).days + 1)
    rows.sort(key=lambda r: (int(r["rank"]), str(r["address"])))  # type: ignore[call-overload]
    return {"hub": ctx.config.prefix, "name": ctx.config.name, "from": start.isoformat(), "to": end.isoformat(),
            "generated_at": localtime.iso(localtime.utcnow()), "timezone": localtime.label(),
            "weights": weights, "units": rows, "totals": totals(rows)}


def _all_rows(report: dict[str, object]) -> list[dict[str, object]]:
    return [*report["units"], report["totals"]]  # type: ignore[list-item, misc]


def to_csv(report: dict[str, object]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([zh for _, zh in COLUMNS])
    for row in _all_rows(report):
        writer.writerow([_cell(row[key]) for key, _ in COLUMNS])
    return "\ufeff" + buf.getvalue()


def _cell(value: object) -> object:
    """A text cell WPS or Excel would take for a formula (=, +, -, @, tab, CR first) is
    quoted with an apostrophe: a unit name is shown, never run (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_html(report: dict[str, object]) -> str:
    head = "".join(f"<th>{html.escape(zh)}</th>" for _, zh in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[key]))}</td>" for key, _ in COLUMNS) + "</tr>"
        for row in _all_rows(report)
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
    from docex.hub.report_files import to_pdf, to_xlsx

    stem.with_suffix(".xlsx").write_bytes(to_xlsx(report, COLUMNS))
    stem.with_suffix(".pdf").write_bytes(to_pdf(report, COLUMNS))
    return stem.with_suffix(".csv")
