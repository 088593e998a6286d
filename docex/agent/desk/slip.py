"""The printable 签收单 (receipt slip): which document, from whom, received when, signed
for (or returned) by whom and when, and the digest of the envelope the signed receipt
names. A PDF drawn with fpdf2 and the Noto CJK faces compose uses."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF

from docex.pki.fonts import FontRole, font_face
from docex.protocols import glossary

STATE_ZH = glossary.zh(glossary.INBOX_STATES)


def _local(value: str | None, zone: ZoneInfo) -> str:
    if not value:
        return ""
    return dt.datetime.fromisoformat(value).astimezone(zone).strftime("%Y年%m月%d日 %H:%M:%S")


def receipt_slip(doc: dict[str, Any], *, unit_name: str, envelope_sha256: str, signed_at: str | None,
                 timezone: str = "Asia/Shanghai") -> bytes:
    zone = ZoneInfo(timezone)
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(True, 20)
    for family, role in (("song", FontRole.SONG), ("hei", FontRole.HEI)):
        face = font_face(role)
        pdf.add_font(family, "", str(face.path), collection_font_number=face.index)
    pdf.set_lang("zh-CN")
    pdf.set_title(f"签收单 {doc['doc_number']}")
    pdf.add_page()
    pdf.set_font("hei", size=22)
    pdf.cell(0, 16, "公文签收单", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("song", size=11)
    pdf.cell(0, 8, f"收文单位：{unit_name}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    rows = [
        ("文件标题", doc["title"]),
        ("发文字号", doc["doc_number"]),
        ("发文单位", doc["sender_name"]),
        ("紧急程度", doc["priority"]),
        ("主送", "、".join(u["name"] for u in doc["to"])),
        ("抄送", "、".join(u["name"] for u in doc["cc"])),
        ("收文时间", _local(doc["received_at"], zone)),
        ("签收时限", _local(doc["deadline"], zone)),
        ("状态", STATE_ZH.get(doc["state"], doc["state"])),
        ("签收人" if doc["state"] != "returned" else "退回人", doc["person"] or "（单位签章）"),
        ("签收时间" if doc["state"] != "returned" else "退回时间", _local(signed_at, zone)),
    ]
    if doc["state"] == "returned":
        rows.append(("退回理由", doc["reason"]))
    rows += [
        ("附件", "；".join(f["name"] for f in doc["files"])),
        ("印章核验", glossary.label(glossary.SEAL_STATES, doc["seal"])),
        ("公文编号", doc["message_id"]),
        ("封包摘要", f"SHA-256 {envelope_sha256}"),
    ]
    for label, value in rows:
        pdf.set_font("hei", size=11)
        x, y = pdf.get_x(), pdf.get_y()
        pdf.multi_cell(32, 9, label, border=1, new_x="RIGHT", new_y="TOP")
        pdf.set_font("song", size=10 if label in ("封包摘要", "公文编号") else 11)
        pdf.set_xy(x + 32, y)
        pdf.multi_cell(0, 9, str(value), border=1, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    pdf.set_font("song", size=10)
    pdf.multi_cell(0, 6, "本单由电子公文交换系统生成。签收回执已由签收人的个人数字证书（或本单位机构证书）签名，"
                         "随公文编号和封包摘要回传发文单位，可离线核验。", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.cell(0, 6, f"打印时间：{dt.datetime.now(zone).strftime('%Y年%m月%d日 %H:%M')}", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
