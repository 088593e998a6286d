"""Measure a composed 公文 against GB/T 9704-2012 from the PDF alone (pdfplumber reads the
glyphs' fonts, sizes and boxes), and write the conformance table of docs/.

    PYTHONPATH=. .venv/bin/python -m tests.documents.gbt9704 > docs/gbt9704-conformance.md
"""

from __future__ import annotations

import io
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pdfplumber
from pdfminer import pdffont
from pdfminer.cmapdb import CMap, FileUnicodeMap
from pdfminer.pdftypes import PDFStream, resolve1

from docex.documents.compose import (
    BODY_H,
    BODY_W,
    CHARS_PER_LINE,
    LEFT,
    LINES_PER_PAGE,
    TOP,
    compose,
)

MM = 25.4 / 72
TOLERANCE_MM = 0.05  # rounding of coordinates written into the PDF
RIGHT, BOTTOM = LEFT + BODY_W, TOP + BODY_H
ONE_CHAR_4HAO = 14 * MM  # "空一字" for the 4号 page number

# A 通知 whose text runs over three pages: headings of both levels, a long title, closing
# punctuation at line ends, attachments, 附注 and 版记.
TITLE = "阳山县信息中心关于印发县电子公文交换系统安全管理办法的通知"  # cut in half, it splits 公文
META: dict[str, Any] = {
    "copy_number": "000012",
    "priority": "特急",
    "issuer": "阳山县人民政府办公室",
    "doc_number": "阳府办〔2011〕12号",
    "signer": "张三",
    "title": TITLE,
    "main_recipients": ["各乡镇人民政府", "县府直属各单位"],
    "attachments": ["阳山县电子公文交换系统试运行方案", "试点单位名单"],
    "date": "2011-09-16",
    "note": "此件公开发布",
    "cc": ["县委办公室", "县人大常委会办公室", "县政协办公室"],
    "printer": "阳山县人民政府办公室",
    "print_date": "2011-09-16",
}
PARAGRAPHS = [
    "为提高公文传输效率，节约行政成本，县人民政府决定在全县推行电子公文交换系统，现将试运行有关事项通知如下。",
    "一、总体要求",
    "以县信息中心为枢纽，建成覆盖全县一百二十五个单位的电子公文交换网络，实现公文的电子化收发、签收和跟踪，做到安全、可靠、及时。",
    "（一）试点阶段",
    "二〇一一年十月一日至十月三十一日，县政府办公室、县发展和改革局、县财政局先行试点，试点单位要指定专人负责，每日登录系统签收公文。",
    "（二）推广阶段",
    "二〇一一年十一月一日起，全县各单位全面使用电子公文交换系统，除涉密公文外，原则上不再印发纸质公文。",
    "二、工作要求",
    "各单位要高度重视，加强组织领导，明确专人负责，按照县人民政府的统一部署，确保电子公文交换系统按期建成、安全运行。",
    "各单位要严格执行保密规定，涉密公文一律不得通过电子公文交换系统传输；电子印章由县信息中心统一制作，各单位不得自行刻制。",
    "县信息中心负责系统的运行维护和技术支持，对各单位收发文员进行培训，并及时解决试运行中出现的问题。",
    "三、联系方式",
    "县信息中心技术支持电话：0763-8888888，电子邮箱：xxzx@yangshan.gov.cn。",
]
BODY = "\n".join(PARAGRAPHS * 2)


def _read_embedded_cmaps() -> None:
    """Teach pdfminer (under pdfplumber) the embedded code->CID CMap that fpdf2 writes for
    CFF (Noto) fonts: pdfminer looks such a CMap up by its name (Adobe-Identity-UCS, which
    it does not know) instead of reading it, so it saw no character of those fonts. Codes are
    mapped to CIDs from the stream, and ToUnicode (keyed by code) re-keyed by CID."""
    if getattr(pdffont.PDFCIDFont, "_docex_patched", False):
        return
    original_cmap = pdffont.PDFCIDFont.get_cmap_from_spec
    original_init = pdffont.PDFCIDFont.__init__

    def get_cmap_from_spec(self: Any, spec: Any, strict: bool) -> Any:
        enc = resolve1(spec.get("Encoding"))
        if not isinstance(enc, PDFStream):
            return original_cmap(self, spec, strict)
        cmap = CMap()
        for block in re.findall(rb"begincidchar(.*?)endcidchar", enc.get_data(), re.S):
            for code, cid in re.findall(rb"<([0-9A-Fa-f]+)>\s+(\d+)", block):
                raw = bytes.fromhex(code.decode())
                node: dict[int, Any] = cmap.code2cid  # type: ignore[assignment]
                for b in raw[:-1]:
                    node = node.setdefault(b, {})
                node[raw[-1]] = int(cid)
        return cmap

    def init(self: Any, rsrcmgr: Any, spec: Any, strict: bool = False) -> None:
        original_init(self, rsrcmgr, spec, strict)
        if not isinstance(resolve1(spec.get("Encoding")), PDFStream) or not isinstance(self.unicode_map, FileUnicodeMap):
            return
        by_code, by_cid = self.unicode_map.cid2unichr, FileUnicodeMap()

        def walk(node: dict[int, Any], prefix: int) -> None:
            for b, value in node.items():
                code = (prefix << 8) | b
                if isinstance(value, dict):
                    walk(value, code)
                elif code in by_code:
                    by_cid.cid2unichr[value] = by_code[code]

        walk(self.cmap.code2cid, 0)
        self.unicode_map = by_cid

    pdffont.PDFCIDFont.get_cmap_from_spec = get_cmap_from_spec  # type: ignore[method-assign]
    pdffont.PDFCIDFont.__init__ = init  # type: ignore[method-assign]
    pdffont.PDFCIDFont._docex_patched = True  # type: ignore[attr-defined]


def pdf_text(pdf_bytes: bytes) -> str:
    """Every character of a PDF drawn with fpdf2 and the Noto CJK faces (compose, the desk's
    签收单), page after page, without spaces."""
    _read_embedded_cmaps()
    with pdfplumber.open(io.BytesIO(pdf_bytes)) as pdf:
        return "".join(page.extract_text() or "" for page in pdf.pages).replace(" ", "")


@dataclass
class Row:
    requirement: str
    measured: str
    ok: bool


def _mm(value: float) -> float:
    return float(value) * MM


def _face(fontname: str) -> str:
    if "UKai" in fontname:
        return "楷体 (AR PL UKai CN)"
    if "Sans" in fontname:
        return "黑体 (Noto Sans CJK SC Bold)"
    if "Serif" in fontname and "Bold" in fontname:
        return "小标宋 (Noto Serif CJK SC Bold)"
    return "仿宋 (Noto Serif CJK SC)"


def _lines(chars: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Characters grouped by baseline (faces differ in ascent, so glyph tops do not line up)."""
    by_base: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for c in chars:
        by_base[round(float(c["matrix"][5]), 1)].append(c)
    return [sorted(by_base[b], key=lambda c: c["x0"]) for b in sorted(by_base, reverse=True)]


def _text(line: list[dict[str, Any]]) -> str:
    return "".join(c["text"] for c in line)


def measure(pdf_bytes: bytes) -> list[Row]:
    _read_embedded_cmaps()
    rows: list[Row] = []
    with pdfplumber.open(io.BytesIO(pdf_bytes)) as pdf:
        pages = [p.chars for p in pdf.pages]
        size = (_mm(pdf.pages[0].width), _mm(pdf.pages[0].height))
    n = len(pages)
    rows.append(Row("A4 纸 210 mm × 297 mm", f"{size[0]:.1f} × {size[1]:.1f} mm", abs(size[0] - 210) < 0.1 and abs(size[1] - 297) < 0.1))

    inside = [[c for c in chars if _mm(c["top"]) < BOTTOM + 1] for chars in pages]
    numbers = [[c for c in chars if _mm(c["top"]) >= BOTTOM + 1] for chars in pages]

    # 版心: every glyph box of every page inside 156 mm (x 28..184 mm from the left edge).
    x0 = min(_mm(c["x0"]) for chars in inside for c in chars)
    x1 = max(_mm(c["x1"]) for chars in inside for c in chars)
    rows.append(Row("版心宽 156 mm：所有字符在 28–184 mm 之内（含行末标点）",
                    f"最左 {x0:.2f} mm，最右 {x1:.2f} mm", x0 >= LEFT - TOLERANCE_MM and x1 <= RIGHT + TOLERANCE_MM))

    # Body: page 2 is text only.
    body = inside[1]
    sizes = sorted({round(float(c["size"]), 2) for c in body})
    rows.append(Row("正文 3号 = 16 pt（第 2 页全部文字）", "、".join(f"{s:g} pt" for s in sizes), sizes == [16.0]))
    lines = _lines(body)
    per_line = max(len(_text(line)) for line in lines if _text(line).isascii() is False and not re.search(r"[ -~]", _text(line)))
    rows.append(Row(f"每行 {CHARS_PER_LINE} 字（全角字符行）", f"最长一行 {per_line} 字", per_line == CHARS_PER_LINE))
    rows.append(Row(f"每页 {LINES_PER_PAGE} 行", f"第 2 页 {len(lines)} 行", len(lines) == LINES_PER_PAGE))
    pitch = (float(lines[0][0]["matrix"][5]) - float(lines[-1][0]["matrix"][5])) * MM / (len(lines) - 1)
    rows.append(Row("行距：22 行排满 225 mm 版心高", f"{pitch:.3f} mm（应为 {BODY_H / LINES_PER_PAGE:.3f}）",
                    abs(pitch - BODY_H / LINES_PER_PAGE) < 0.02))
    starts = [_text(line)[0] for chars in inside for line in _lines(chars)]
    rows.append(Row("避头：行首无，。、；：！？）”", f"{sum(s in '，。、；：！？）”' for s in starts)} 行违反",
                    not any(s in "，。、；：！？）”" for s in starts)))

    # Title: 2号 (22 pt) 小标宋, broken between words.
    title_lines = [_text(line) for line in _lines([c for c in inside[0] if round(float(c["size"])) == 22])]
    import jieba

    jieba.setLogLevel(60)
    bounds, at = set(), 0
    for word in jieba.cut(TITLE, HMM=False):
        at += len(word)
        bounds.add(at)
    breaks, at = [], 0
    for line in title_lines[:-1]:
        at += len(line)
        breaks.append(at)
    rows.append(Row("标题 2号（22 pt）小标宋，回行词意完整（不拆词）", " / ".join(title_lines),
                    "".join(title_lines) == TITLE and all(b in bounds for b in breaks)))

    # Faces of the 签发人 name and the headings.
    first = _lines(inside[0])
    signer_line = next(line for line in first if "签发人" in _text(line))
    name = [c for c in signer_line if c["text"] in META["signer"]]
    faces = {_face(c["fontname"]) for c in name}
    rows.append(Row("签发人姓名用楷体", "、".join(sorted(faces)), faces == {"楷体 (AR PL UKai CN)"}))
    all_lines = [line for chars in inside for line in _lines(chars)]
    h2 = [line for line in all_lines if _text(line).startswith("（一）")]
    h2_faces = {_face(c["fontname"]) for line in h2 for c in line}
    rows.append(Row("二级标题“（一）”用楷体", "、".join(sorted(h2_faces)) or "未找到", h2_faces == {"楷体 (AR PL UKai CN)"}))
    h1 = [line for line in all_lines if _text(line).startswith("一、")]
    h1_faces = {_face(c["fontname"]) for line in h1 for c in line}
    rows.append(Row("一级标题“一、”用黑体", "、".join(sorted(h1_faces)) or "未找到", h1_faces == {"黑体 (Noto Sans CJK SC Bold)"}))

    # Page numbers: 4号 on every numbered page, one character in at the outer side.
    details, ok = [], True
    for ix, chars in enumerate(numbers, 1):
        if not chars:
            details.append(f"第{ix}页无")
            continue
        psizes = {round(float(c["size"]), 2) for c in chars}
        if ix % 2:
            gap = RIGHT - max(_mm(c["x1"]) for c in chars)
        else:
            gap = min(_mm(c["x0"]) for c in chars) - LEFT
        details.append(f"第{ix}页 {'/'.join(f'{s:g}' for s in sorted(psizes))} pt，{'右' if ix % 2 else '左'}空 {gap:.2f} mm")
        ok = ok and psizes == {14.0} and abs(gap - ONE_CHAR_4HAO) < 0.3
    ok = ok and all(numbers[i] for i in range(n - 1))
    rows.append(Row(f"页码 4号（14 pt），单页居右、双页居左，空一字（{ONE_CHAR_4HAO:.2f} mm）", "；".join(details), ok))

    # 版记 on the last page, an even one, in 4号.
    record_lines = [line for line in _lines(inside[-1]) if "抄送" in _text(line) or "印发" in _text(line)]
    record_sizes = {round(float(c["size"]), 2) for line in record_lines for c in line}
    rows.append(Row("版记位于最后一页且为偶数页，4号字", f"共 {n} 页，版记在第 {n} 页，{'/'.join(f'{s:g}' for s in sorted(record_sizes))} pt",
                    n % 2 == 0 and len(record_lines) == 2 and record_sizes == {14.0}))
    return rows


def composed() -> bytes:
    return compose(META, BODY)


def table(rows: list[Row]) -> str:
    out = ["| 要求 (GB/T 9704-2012) | 实测 | 通过 |", "| --- | --- | --- |"]
    out += [f"| {r.requirement} | {r.measured} | {'✓' if r.ok else '✗'} |" for r in rows]
    return "\n".join(out)


HEADER = """# GB/T 9704-2012 conformance of `docex compose` (measured)

Measured from the PDF alone by `tests/documents/gbt9704.py` (pdfplumber: every glyph's
font, size and box) on a composed 通知 whose text runs over three pages (the sample in that
file: long title, headings of both levels, attachments, 附注, 版记). The test
`tests/documents/test_gbt9704.py` measures it again on every run and fails on any ✗ or when
this table no longer matches. Regenerate:

    PYTHONPATH=. .venv/bin/python -m tests.documents.gbt9704 > docs/gbt9704-conformance.md

Stand-in faces (no free 仿宋/小标宋 in Debian): see `docex/pki/fonts.py`. The body is 16 pt
set 98.7 % wide (PDF horizontal scaling) so that 28 characters fill the 156 mm 版心; the
standard's 28 × 16 pt would be 158 mm.

"""


def main() -> None:
    sys.stdout.write(HEADER + table(measure(composed())) + "\n")


if __name__ == "__main__":
    main()
