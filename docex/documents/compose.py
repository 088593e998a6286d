"""Lay out an official document (公文) following GB/T 9704-2012, as an A4 PDF.

For units without an office system: metadata (the same field names as the envelope
manifest) and plain body text in, a standard document out. What is followed:

- A4, 版心 156 x 225 mm, 天头 37 mm, 订口 28 mm; body 3号 (about 16 pt) in 22 lines of
  28 characters per page, on a fixed line grid.
- 版头: 份号, 密级, 紧急程度 stacked top left (黑体); the red 发文机关标志 35 mm below the
  top of the 版心; 发文字号 two lines below it (left, with 签发人 right, when there is a
  签发人); the red separator 4 mm under 发文字号.
- 主体: title (2号 小标宋 stand-in, centred, balanced lines) two lines under the red line;
  主送机关 one line under the title; paragraphs indented two characters, justified, with
  line-start/line-end punctuation rules; headings "一、" in 黑体 and "（一）" in 楷体;
  附件说明; 署名 centred over 成文日期 (right, four characters in); 附注.
- 版记 at the foot of the last page: 抄送机关, 印发机关 and 印发日期 between thick/thin
  rules, the last rule on the bottom edge of the 版心.
- Page numbers "— N —" in 4号 (14 pt), 7 mm under the 版心, one character in from the outer
  edge (odd pages right, even pages left).
- The body is exactly 16 pt, set 98.7 % wide so that 28 characters fill the 156 mm 版心;
  no glyph hangs outside it (closing punctuation pushes the previous character down
  instead); titles break between words (jieba); 签发人 name and "（一）" headings in 楷体.
- 版记 on the last page, which is even; a blank page before it and the 版记 page itself
  then have no page number. Measured against the standard: docs/gbt9704-conformance.md.

Fonts are the stand-ins listed in ``docex.pki.fonts`` (no free 仿宋/小标宋 exists in Debian).

Where the seal goes: the 署名/成文日期 area is written into the PDF as an empty signature
field named ``docex.pki.seal.SEAL_FIELD`` whose rectangle is the seal's square (42 mm,
centred on 成文日期, its centre a little above 署名 and 成文日期 as the standard asks).
``docex.pki.seal.apply_seal`` signs into that field by default, so the visible seal lands
there. Not done: 联合行文 (several issuers' marks in the 版头).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fpdf import FPDF

from docex.pki.errors import PkiError
from docex.pki.fonts import FontRole, font_face
from docex.pki.seal import add_seal_field

# Geometry (mm) from GB/T 9704-2012 §5.2.
PAGE_W, PAGE_H = 210.0, 297.0
LEFT, TOP = 28.0, 37.0
BODY_W, BODY_H = 156.0, 225.0
LINES_PER_PAGE, CHARS_PER_LINE = 22, 28
PITCH = BODY_H / LINES_PER_PAGE  # line grid: 22 lines fill the 版心
CELL = BODY_W / CHARS_PER_LINE  # one full-width character on the grid
PT = 25.4 / 72  # mm per point
BODY_PT = 16.0  # 3号, exactly
# 28 characters of 16 pt are 158 mm, 2 mm wider than the 156 mm 版心 the standard also asks
# for: the body face is set 98.7 % wide (PDF horizontal scaling, Tz) so that 28 fill the
# 版心 exactly while the type stays 16 pt (Word templates narrow the character spacing).
GRID_STRETCH = 100.0 * CELL / (BODY_PT * PT)
TITLE_PT = 22.0  # 2号
SMALL_PT = 14.0  # 4号: 版记, page numbers
SEAL_DIAMETER = 42.0  # county-level seals are 4.2 cm
RED = (230, 0, 18)
BLACK = (0, 0, 0)
ASCENT = 0.88  # CJK glyph top above the baseline, in em

_NO_START = set("，。、；：！？）》」』】〕〉”’％%,.;:!?)]}·…—")  # never begin a line
_NO_END = set("（《「『【〔〈“‘([{")  # never end a line
_LATIN = re.compile(r"[A-Za-z0-9.\-_/@]")
_HEADING_1 = re.compile(r"^[一二三四五六七八九十]+、")
_HEADING_2 = re.compile(r"^（[一二三四五六七八九十]+）")
_PRIORITY = {"特急": "特急", "加急": "加急", "特提": "特提", "immediate": "特急", "urgent": "加急"}
_CLASSIFIED = {"secret": "秘密", "confidential": "机密", "top_secret": "绝密"}


class ComposeError(PkiError):
    """The metadata or body cannot be laid out (code ``bad_metadata``, names the field)."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_metadata", message)


@dataclass
class DocumentMeta:
    """The GB/T 9704 elements, named like the envelope manifest's fields."""

    issuer: str  # 发文机关 (the mark reads issuer + "文件")
    title: str
    date: dt.date  # 成文日期
    copy_number: str = ""  # 份号
    classification: str = ""  # 密级 (and 保密期限, e.g. "秘密★1年")
    priority: str = ""  # 紧急程度
    doc_number: str = ""  # 发文字号
    signer: str = ""  # 签发人
    main_recipients: list[str] = field(default_factory=list)  # 主送机关
    attachments: list[str] = field(default_factory=list)  # 附件说明
    signature_name: str = ""  # 署名 (defaults to issuer)
    note: str = ""  # 附注
    cc: list[str] = field(default_factory=list)  # 抄送机关
    printer: str = ""  # 印发机关
    print_date: dt.date | None = None  # 印发日期

    @classmethod
    def from_any(cls, meta: Mapping[str, Any] | DocumentMeta | Any) -> DocumentMeta:
        """From a dict (e.g. META.json), a ``docex.protocols.manifest.Manifest`` (its
        ``fields`` hold the GB/T 9704 extras; its ``recipients``/``cc`` are addresses,
        not names, so only names given in ``fields`` are printed) or any object
        carrying these attributes."""
        if isinstance(meta, DocumentMeta):
            return meta
        if isinstance(meta, Mapping):
            raw = dict(meta)
        elif isinstance(getattr(meta, "fields", None), Mapping):
            raw = {k: getattr(meta, k, None) for k in ("title", "doc_number", "priority", "classification")}
            raw.update(meta.fields)
        elif dataclasses.is_dataclass(meta) and not isinstance(meta, type):
            raw = dataclasses.asdict(meta)
        else:
            raw = {f.name: getattr(meta, f.name) for f in dataclasses.fields(cls) if hasattr(meta, f.name)}
        if isinstance(raw.get("fields"), Mapping):  # a manifest as a dict
            raw = {**{k: v for k, v in raw.items() if k not in ("fields", "cc", "recipients")}, **raw["fields"]}
        for required in ("issuer", "title", "date"):
            if not raw.get(required):
                raise ComposeError(f"公文缺少必填项 {required} (missing metadata field {required!r})")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw or raw[f.name] is None:
                continue
            value = raw[f.name]
            if f.name in ("date", "print_date"):
                value = _as_date(value, f.name)
            elif f.name in ("main_recipients", "attachments", "cc"):
                value = _as_list(value, f.name)
            else:
                value = str(value).strip()
            kwargs[f.name] = value
        return cls(**kwargs)


def _as_date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ComposeError(f"{name} 不是 ISO 日期 (not an ISO date): {value!r}") from None


def _as_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, Sequence):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ComposeError(f"{name} must be a list of names, got {type(value).__name__}")


def chinese_date(d: dt.date) -> str:
    """成文日期 as GB/T 9704-2012 prints it: 2011年9月16日 (no leading zeros)."""
    return f"{d.year}年{d.month}月{d.day}日"


@dataclass
class _Row:
    """One line on the grid after the 版头."""

    text: str = ""
    role: FontRole = FontRole.SONG
    size: float = BODY_PT
    x: float = LEFT
    width: float = BODY_W  # for justification
    justify: bool = False
    align: str = "L"  # L, C


class _Doc:
    def __init__(self) -> None:
        pdf = FPDF(orientation="P", unit="mm", format="A4")
        pdf.set_auto_page_break(False)
        pdf.set_margins(0, 0, 0)
        pdf.c_margin = 0
        # One fpdf font per distinct face: loading and subsetting a CJK face costs ~1 s.
        self.family: dict[FontRole, str] = {}
        loaded: dict[tuple[str, int], str] = {}
        for role in FontRole:
            face = font_face(role)
            key = (str(face.path), face.index)
            if key not in loaded:
                loaded[key] = f"f{len(loaded)}"
                pdf.add_font(loaded[key], "", key[0], collection_font_number=face.index)
            self.family[role] = loaded[key]
        pdf.set_lang("zh-CN")
        self.pdf = pdf
        self._widths: dict[tuple[str, FontRole, float], float] = {}

    def font(
        self, role: FontRole, size: float, color: tuple[int, int, int] = BLACK, *, stretch: float | None = None
    ) -> None:
        """Select face, size and horizontal scaling, always written into the current page:
        fpdf2 skips a font it believes selected, which is wrong after returning to an
        earlier page (page numbers came out in the body size there)."""
        self.pdf.font_family = ""  # forget the selection: the next text re-emits Tf
        self.pdf.set_font(self.family[role], size=size)
        self.pdf.font_stretching = -1.0  # likewise for Tz
        self.pdf.set_stretching(_stretch(size) if stretch is None else stretch)
        self.pdf.set_text_color(*color)

    def width(self, text: str, role: FontRole, size: float) -> float:
        """Advance width in mm as drawn (with the horizontal scaling of that size)."""
        key = (text, role, size)
        if key not in self._widths:
            pdf = self.pdf
            saved = pdf.font_family, pdf.font_style, pdf.font_size_pt, pdf.current_font, pdf.font_stretching
            pdf.set_font(self.family[role], size=size)
            pdf.font_stretching = 100.0  # attribute only: nothing is written to the page
            raw = float(pdf.get_string_width(text))
            pdf.font_family, pdf.font_style, pdf.font_size_pt, pdf.current_font, pdf.font_stretching = saved
            self._widths[key] = raw * _stretch(size) / 100.0
        return self._widths[key]

    def text(self, x: float, top: float, text: str, size: float) -> None:
        """Draw ``text`` with its glyph tops at ``top`` (mm from the page top)."""
        self.pdf.text(x, top + ASCENT * size * PT, text)

    def rule(self, y: float, thickness: float, color: tuple[int, int, int]) -> None:
        self.pdf.set_draw_color(*color)
        self.pdf.set_line_width(thickness)
        self.pdf.line(LEFT, y, LEFT + BODY_W, y)


def _stretch(size: float) -> float:
    return GRID_STRETCH if size == BODY_PT else 100.0


def _line_top(line: int) -> float:
    return TOP + line * PITCH


def _wrap(doc: _Doc, text: str, role: FontRole, size: float, first_w: float, rest_w: float) -> list[str]:
    """Break ``text`` into lines of the given widths, keeping Latin words whole and
    obeying the line-start/line-end punctuation rules (避头尾)."""
    # Units: a Latin word stays whole; every other character stands alone.
    units: list[str] = []
    for ch in text:
        if units and _LATIN.match(ch) and _LATIN.match(units[-1][-1]):
            units[-1] += ch
        else:
            units.append(ch)
    lines: list[str] = []
    cur, cur_w = "", 0.0
    limit = first_w
    for unit in units:
        w = doc.width(unit, role, size)
        if cur and cur_w + w > limit + 0.01:
            carry = ""
            if unit[0] in _NO_START:
                # 避头: no line starts with closing punctuation. Rather than hang it past
                # the 版心 (GB/T 9704 keeps every glyph inside), push the character before
                # it to the next line too (推出); the shorter line is then justified.
                while len(cur) > 1 and cur[-1] in _NO_START:
                    carry = cur[-1] + carry
                    cur = cur[:-1]
                if len(cur) > 1:
                    carry = cur[-1] + carry
                    cur = cur[:-1]
            while len(cur) > 1 and cur[-1] in _NO_END:
                carry = cur[-1] + carry
                cur = cur[:-1]
            lines.append(cur)
            cur = carry
            cur_w = doc.width(cur, role, size) if cur else 0.0
            limit = rest_w
        cur += unit
        cur_w += w
    if cur or not lines:
        lines.append(cur)
    return lines


# Parts of speech (jieba's ICTCLAS tags) next to which a title breaks well: preposition
# (关于), particle (的), conjunction (和), punctuation; and after the verb that opens the
# 事由 (关于推行 | …, 关于印发 | …). Elsewhere between words is allowed at a penalty:
# 电子公文 / 交换系统 are separate words to jieba but read as one split term.
_PHRASE_EDGE = ("p", "u", "c", "x")
_COMPOUND_PENALTY = 3  # characters of imbalance worth avoiding a break inside a phrase


def _title_breaks(text: str) -> dict[int, int]:
    """Offsets where a title may break, each with a penalty: 0 at a phrase edge, higher
    between two nouns of one compound (电子公文 / 交换系统 reads as a split term).
    Words and parts of speech come from jieba (its dictionary knows 人民政府, 信息中心,
    试运行...; a hand-made word list would miss most of a title's vocabulary). Never
    inside a word, before closing or after opening punctuation."""
    import jieba  # imported here: loading its dictionaries takes a second or two
    import jieba.posseg

    jieba.setLogLevel(60)  # its start-up chatter is not for clerks
    pairs = [(p.word, p.flag) for p in jieba.posseg.cut(text, HMM=False)]
    breaks: dict[int, int] = {}
    at = 0
    for i, ((word, flag), (_next_word, next_flag)) in enumerate(zip(pairs, pairs[1:], strict=False)):
        at += len(word)
        if text[at] in _NO_START or text[at - 1] in _NO_END:
            continue
        opens_cause = i > 0 and pairs[i - 1][0] == "关于"  # (jieba tags 印发 nz, 推行 v...)
        edge = flag.startswith(_PHRASE_EDGE) or next_flag.startswith(_PHRASE_EDGE) or opens_cause
        breaks[at] = 0 if edge else _COMPOUND_PENALTY
    return breaks


def _balanced_title(doc: _Doc, title: str) -> list[str]:
    """Title lines of near-equal length (GB/T 9704: 排列对称，词意完整), at most the 版心
    wide, broken between words and preferably between phrases (see :func:`_title_breaks`)."""
    max_chars = int(BODY_W // (TITLE_PT * PT))
    if len(title) <= max_chars:
        return [title]
    allowed = _title_breaks(title)
    n_lines = max(2, math.ceil(len(title) / max_chars))
    while True:
        per = len(title) / n_lines
        lines, start = [], 0
        for k in range(1, n_lines):
            ideal = round(k * per)
            options = [c for c in allowed if start < c <= start + max_chars and len(title) - c <= (n_lines - k) * max_chars]
            if options:
                cut = min(options, key=lambda c: (abs(c - ideal) + allowed[c], allowed[c], c))
            else:  # no word boundary fits: break at the character (rare)
                cut = min(start + max_chars, max(start + 1, ideal))
            lines.append(title[start:cut])
            start = cut
        lines.append(title[start:])
        if all(len(line) <= max_chars for line in lines) or n_lines > len(title):
            return lines
        n_lines += 1


def _paragraph_rows(doc: _Doc, text: str) -> list[_Row]:
    text = text.strip().lstrip("\u3000")
    role = FontRole.SONG
    if (_HEADING_1.match(text) or _HEADING_2.match(text)) and len(text) <= 2 * CHARS_PER_LINE:
        role = FontRole.HEI if _HEADING_1.match(text) else FontRole.KAI
        if "。" in text.rstrip("。"):
            role = FontRole.SONG  # a heading run into its paragraph stays body text
    lines = _wrap(doc, text, role, BODY_PT, BODY_W - 2 * CELL, BODY_W)
    rows = []
    for i, line in enumerate(lines):
        indent = 2 * CELL if i == 0 else 0.0
        rows.append(
            _Row(line, role, BODY_PT, LEFT + indent, BODY_W - indent, justify=i < len(lines) - 1)
        )
    return rows


def _draw_row(doc: _Doc, row: _Row, top: float) -> None:
    doc.font(row.role, row.size)
    if row.align == "C":
        w = doc.width(row.text, row.role, row.size)
        doc.text(LEFT + (BODY_W - w) / 2, top, row.text, row.size)
        return
    natural = doc.width(row.text, row.role, row.size)
    slack = row.width - natural
    if not row.justify or len(row.text) < 2 or slack <= 0.05 or slack > 6 * CELL:
        doc.text(row.x, top, row.text, row.size)
        return
    # 两端对齐: spread the slack over the gaps between characters.
    gap = slack / (len(row.text) - 1)
    x = row.x
    for ch in row.text:
        doc.text(x, top, ch, row.size)
        x += doc.width(ch, row.role, row.size) + gap


def compose(meta: Mapping[str, Any] | DocumentMeta | Any, body: str) -> bytes:
    """A GB/T 9704 document as PDF bytes, with an empty seal field at the 署名/成文日期.

    ``meta``: a dict with the manifest's field names (see :class:`DocumentMeta`) or a
    DocumentMeta; ``body``: plain text, one paragraph per non-empty line. Raises
    :class:`ComposeError` on missing or malformed fields.
    """
    m = DocumentMeta.from_any(meta)
    if not isinstance(body, str):
        raise ComposeError("body must be text")
    doc = _Doc()
    pdf = doc.pdf
    pdf.set_title(m.title)
    pdf.set_author(m.signature_name or m.issuer)
    pdf.set_subject(m.doc_number or m.title)
    pdf.set_creator("docex compose (GB/T 9704-2012)")

    # ---- 版头 (page 1) -------------------------------------------------------
    pdf.add_page()
    head_items = []
    if m.copy_number:
        digits = re.sub(r"\D", "", m.copy_number)
        head_items.append(digits.zfill(6) if digits else m.copy_number)
    classification = _CLASSIFIED.get(m.classification.lower(), m.classification)
    if m.classification and m.classification not in ("普通", "无", "非密", "公开", "none", "public"):
        head_items.append(classification)
    if m.priority and (label := _PRIORITY.get(m.priority.lower(), _PRIORITY.get(m.priority))):
        head_items.append(label)
    for head_line, item in enumerate(head_items):  # 份号, 密级, 紧急程度 on lines 1-3
        doc.font(FontRole.HEI, BODY_PT)
        doc.text(LEFT, _line_top(head_line), item, BODY_PT)

    mark = m.issuer if m.issuer.endswith("文件") else m.issuer + "文件"
    stretch = 75.0  # the mark's characters are set tall and narrow, as printed 红头 are
    em = min(20.0, 150.0 / (len(mark) * stretch / 100))
    mark_pt = em / PT
    mark_top = TOP + 35.0
    doc.font(FontRole.XBS, mark_pt, RED)
    pdf.set_stretching(stretch)
    mark_w = doc.width(mark, FontRole.XBS, mark_pt) * stretch / 100  # drawn at that width
    doc.text(LEFT + (BODY_W - mark_w) / 2, mark_top, mark, mark_pt)
    pdf.set_stretching(100)

    number_line = math.ceil((mark_top + em - TOP) / PITCH) + 2  # 标志下空二行
    number_top = _line_top(number_line)
    doc.font(FontRole.SONG, BODY_PT)
    if m.signer:
        if m.doc_number:
            doc.text(LEFT + CELL, number_top, m.doc_number, BODY_PT)
        label, name = "签发人：", m.signer
        name_w = doc.width(name, FontRole.KAI, BODY_PT)
        label_w = doc.width(label, FontRole.SONG, BODY_PT)
        x = LEFT + BODY_W - CELL - name_w - label_w
        doc.font(FontRole.SONG, BODY_PT)
        doc.text(x, number_top, label, BODY_PT)
        doc.font(FontRole.KAI, BODY_PT)
        doc.text(x + label_w, number_top, name, BODY_PT)
    elif m.doc_number:
        w = doc.width(m.doc_number, FontRole.SONG, BODY_PT)
        doc.text(LEFT + (BODY_W - w) / 2, number_top, m.doc_number, BODY_PT)
    doc.rule(number_top + BODY_PT * PT + 4.0, 0.5, RED)  # 发文字号之下 4 mm

    # ---- 主体 rows -----------------------------------------------------------
    rows: list[_Row | None] = []  # None is an empty grid line
    for line in _balanced_title(doc, m.title):
        rows.append(_Row(line, FontRole.XBS, TITLE_PT, align="C"))
    rows.append(None)
    if m.main_recipients:
        text = "、".join(m.main_recipients) + "："
        for line in _wrap(doc, text, FontRole.SONG, BODY_PT, BODY_W, BODY_W):
            rows.append(_Row(line, FontRole.SONG, BODY_PT, LEFT))
    for para in body.splitlines():
        if para.strip():
            rows.extend(_paragraph_rows(doc, para))
    if m.attachments:
        rows.append(None)
        label = "附件："
        label_w = doc.width(label, FontRole.SONG, BODY_PT)
        numbered = len(m.attachments) > 1
        for i, name in enumerate(m.attachments, 1):
            item = f"{i}.{name}" if numbered else name
            prefix_w = doc.width(f"{i}.", FontRole.SONG, BODY_PT) if numbered else 0.0
            x0 = LEFT + 2 * CELL + label_w
            lines = _wrap(doc, item, FontRole.SONG, BODY_PT, BODY_W - (x0 - LEFT), BODY_W - (x0 - LEFT) - prefix_w)
            for j, line in enumerate(lines):
                if i == 1 and j == 0:
                    rows.append(_Row(label + line, FontRole.SONG, BODY_PT, LEFT + 2 * CELL))
                else:  # continuation lines align with the first character of the name
                    rows.append(_Row(line, FontRole.SONG, BODY_PT, x0 + (prefix_w if j else 0.0)))

    signature = m.signature_name or m.issuer
    date_text = chinese_date(m.date)
    note_rows = (
        [_Row(line, FontRole.SONG, BODY_PT, LEFT + 2 * CELL) for line in _wrap(doc, f"（{m.note}）", FontRole.SONG, BODY_PT, BODY_W - 2 * CELL, BODY_W - 2 * CELL)]
        if m.note
        else []
    )
    # 署名 three lines under the last text line, 成文日期 under it, 附注 under that.
    sig_block = 4 + len(note_rows)

    # ---- paginate --------------------------------------------------------------
    first_line = number_line + 3  # title: 红色分隔线下空二行
    placed: list[tuple[int, int, _Row]] = []
    page, line_no = 0, first_line
    for row in rows:
        if line_no >= LINES_PER_PAGE:
            page, line_no = page + 1, 0
        if row is None:
            if line_no > 0:  # no blank line at the top of a page
                line_no += 1
            continue
        placed.append((page, line_no, row))
        line_no += 1
    if not placed:
        raise ComposeError("nothing to lay out")
    last_page, last_line, _ = placed[-1]
    if last_line + sig_block >= LINES_PER_PAGE:
        # The seal may not stand on a page without text: carry the last line over.
        placed[-1] = (last_page + 1, 0, placed[-1][2])
        last_page, last_line = last_page + 1, 0

    for page_ix, line_ix, row in placed:
        while pdf.page < page_ix + 1:
            pdf.add_page()
        pdf.page = page_ix + 1
        _draw_row(doc, row, _line_top(line_ix))

    while pdf.page < last_page + 1:
        pdf.add_page()
    pdf.page = last_page + 1
    sig_line = last_line + 3
    date_line = sig_line + 1
    doc.font(FontRole.SONG, BODY_PT)
    date_w = doc.width(date_text, FontRole.SONG, BODY_PT)
    date_right = LEFT + BODY_W - 4 * CELL  # 成文日期右空四字
    date_center = date_right - date_w / 2
    sig_w = doc.width(signature, FontRole.SONG, BODY_PT)
    doc.text(date_center - sig_w / 2, _line_top(sig_line), signature, BODY_PT)
    doc.text(date_right - date_w, _line_top(date_line), date_text, BODY_PT)
    for k, row in enumerate(note_rows):
        _draw_row(doc, row, _line_top(date_line + 1 + k))
    # Seal centre a little above 署名 and 成文日期 ("居印章中心偏下").
    seal_center = (date_center, _line_top(sig_line) + 0.3 * PITCH)
    used_until = max(date_line + len(note_rows), math.ceil((seal_center[1] + SEAL_DIAMETER / 2 - TOP) / PITCH) - 1)

    # ---- 版记 (foot of the last page) ----------------------------------------
    unnumbered: set[int] = set()
    if m.cc or m.printer or m.print_date:
        doc.font(FontRole.SONG, SMALL_PT)
        small_cell = SMALL_PT * PT
        cc_rows: list[tuple[float, str]] = []
        if m.cc:
            label = "抄送："
            label_w = doc.width(label, FontRole.SONG, SMALL_PT)
            text = "、".join(m.cc) + "。"
            avail = BODY_W - 2 * small_cell - label_w
            for j, line in enumerate(_wrap(doc, text, FontRole.SONG, SMALL_PT, avail, avail)):
                cc_rows.append((LEFT + small_cell + (label_w if j else 0.0), (label if j == 0 else "") + line))
        n = len(cc_rows) + 1
        first = LINES_PER_PAGE - n
        # 版记 goes on the last page, and the last page is even (封四, GB/T 9704 §7.5 and
        # §7.6): on the text's last page if it is even and has room, else on the next even
        # page; a blank page before it (and the 版记 page then) carries no page number.
        record_page = last_page + 1
        if record_page % 2 or first <= used_until:
            record_page += 1 if record_page % 2 else 2
        if record_page - (last_page + 1) > 1:
            unnumbered.update(range(last_page + 2, record_page + 1))
        while pdf.pages_count < record_page:
            pdf.add_page()
        pdf.page = record_page
        top = _line_top(first)
        doc.rule(top, 0.35, BLACK)
        for k, (x, text) in enumerate(cc_rows):
            doc.font(FontRole.SONG, SMALL_PT)
            doc.text(x, _line_top(first + k) + (PITCH - small_cell) / 2, text, SMALL_PT)
        if cc_rows:
            doc.rule(_line_top(LINES_PER_PAGE - 1), 0.25, BLACK)
        pline_top = _line_top(LINES_PER_PAGE - 1) + (PITCH - small_cell) / 2
        doc.font(FontRole.SONG, SMALL_PT)
        if m.printer:
            doc.text(LEFT + small_cell, pline_top, m.printer, SMALL_PT)
        if m.print_date:
            text = chinese_date(m.print_date) + "印发"
            w = doc.width(text, FontRole.SONG, SMALL_PT)
            doc.text(LEFT + BODY_W - small_cell - w, pline_top, text, SMALL_PT)
        doc.rule(TOP + BODY_H, 0.35, BLACK)  # the last rule sits on the 版心 bottom

    # ---- page numbers ------------------------------------------------------
    total = pdf.pages_count
    for p in range(1, total + 1):
        if p in unnumbered:
            continue
        pdf.page = p
        doc.font(FontRole.SONG, SMALL_PT)
        text = f"— {p} —"
        w = doc.width(text, FontRole.SONG, SMALL_PT)
        cell = SMALL_PT * PT
        x = LEFT + BODY_W - cell - w if p % 2 else LEFT + cell
        dash_top = TOP + BODY_H + 7.0  # 一字线上距版心下边缘 7 mm
        doc.text(x, dash_top - 0.45 * cell, text, SMALL_PT)
    pdf.page = total

    out = bytes(pdf.output())
    return add_seal_field(
        out,
        page=last_page + 1,
        center_mm=seal_center,
        diameter_mm=SEAL_DIAMETER,
    )
