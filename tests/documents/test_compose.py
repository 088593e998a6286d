from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest

from docex.documents.compose import (
    BODY_H,
    TOP,
    DocumentMeta,
    chinese_date,
    compose,
)
from docex.pki.errors import PkiError
from docex.pki.seal import seal_position
from docex.protocols.manifest import Manifest, new_message_id
from tests.pki.pdfcheck import red_fraction, render_page
from tests.samples import GBT9704_META

META = {**GBT9704_META, "copy_number": "12"}
PARAGRAPH = "各单位要高度重视，加强组织领导，明确专人负责，按照县人民政府的统一部署，确保电子公文交换系统按期建成、安全运行，并于2011年10月1日起全面使用。"
BODY = "\n".join(["一、总体要求", *[PARAGRAPH] * 6, "（一）试点阶段", *[PARAGRAPH] * 6])


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    pdf = compose(META, BODY)
    path = tmp_path_factory.mktemp("compose") / "doc.pdf"
    path.write_bytes(pdf)
    return pdf, path


def _text(path: Path, page: int, *extra: str) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", *extra, "-f", str(page), "-l", str(page), str(path), "-"],
        capture_output=True, text=True, check=True,
    ).stdout


def _pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]


def test_head_of_the_document_follows_gbt9704(doc: tuple[bytes, Path], tmp_path: Path) -> None:
    _pdf, path = doc
    first = _text(path, 1)
    for expected in ("000012", "特急", "阳山县人民政府文件", "阳府〔2011〕12号", "签发人：", "张三",
                     "各乡镇人民政府、县府直属各单位："):
        assert expected in first, expected
    assert re.search(r"—\s*1\s*—", first)  # page number between 一字线
    assert first.index("000012") < first.index("特急") < first.index("阳山县人民政府文件") < first.index("阳府〔2011〕12号")
    page1 = render_page(doc[0], 1, tmp_path)
    assert red_fraction(page1, (105.0, TOP + 35 + 9), 10) > 0.15  # the red 发文机关标志, 35 mm under the 版心 top
    assert red_fraction(page1, (30.0, 82.0), 5) == 0  # left margin stays white
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    rows = [line for line in fonts.splitlines()[2:] if line.strip()]
    assert rows and all(("Noto" in r or "UKai" in r) and " yes yes " in r for r in rows)  # CJK faces embedded, subset


def test_body_pages_signature_and_imprint(doc: tuple[bytes, Path]) -> None:
    pdf, path = doc
    pages = _pages(path)
    assert pages >= 2 and pages % 2 == 0  # 版记 on the last page, an even one
    record = _text(path, pages)
    assert "抄送：县委办公室、县人大常委会办公室、县政协办公室。" in record
    assert re.search(r"阳山县人民政府办公室\s+2011年9月16日印发", record)
    assert record.index("抄送") < record.index("印发")
    pos = seal_position(pdf)
    assert pos is not None
    signed = _text(path, pos.page)
    assert "阳山县人民政府" in signed and "2011年9月16日" in signed and "（此件公开发布）" in signed
    assert re.search(rf"—\s*{pos.page}\s*—", signed)
    if pos.page == pages:  # 版记 under the signature on the same page
        assert signed.index("2011年9月16日") < signed.index("抄送")
    else:  # the text ended on an odd page: 版记 alone on the next (even) page
        assert pos.page == pages - 1 and "2011年9月16日" not in record.split("印发")[0].split("抄送")[0]
    pages = pos.page

    pos = seal_position(pdf)
    assert pos is not None and pos.page == pages
    # 成文日期 lies under the seal's centre, inside the seal (GB/T 9704: 居印章中心偏下).
    bbox = _text(path, pages, "-bbox")
    words = re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]+)</word>', bbox)
    date = next(w for w in words if w[4] == "2011年9月16日")
    x = (float(date[0]) + float(date[2])) / 2 * 25.4 / 72
    y = (float(date[1]) + float(date[3])) / 2 * 25.4 / 72
    assert abs(x - pos.center_mm[0]) < 2
    assert pos.center_mm[1] < y < pos.center_mm[1] + pos.diameter_mm / 2
    assert y < TOP + BODY_H


def test_paragraphs_are_indented_and_wrapped_at_28_characters(doc: tuple[bytes, Path]) -> None:
    _pdf, path = doc
    text = _text(path, 2)
    lines = [line.strip() for line in text.splitlines() if line.strip() and "—" not in line]
    assert lines and max(len(line.replace(" ", "")) for line in lines) <= 28  # nothing hangs outside
    assert not any(line[0] in "，。、；：！？）" for line in lines)  # 避头: no line starts with these


def test_chinese_date() -> None:
    assert chinese_date(dt.date(2011, 9, 16)) == "2011年9月16日"
    assert chinese_date(dt.date(2011, 10, 1)) == "2011年10月1日"


@pytest.mark.parametrize(
    "change",
    [{"title": ""}, {"issuer": None}, {"date": "16/9/2011"}, {"cc": 42}],
)
def test_bad_metadata_is_a_named_error(change: dict[str, object]) -> None:
    with pytest.raises(PkiError) as err:
        compose({**META, **change}, "正文")
    assert err.value.code == "bad_metadata"


def test_meta_from_a_manifest_uses_its_gbt9704_fields() -> None:
    manifest = Manifest(
        message_id=new_message_id(), sender="qingyuan.yangshan.zfb", recipients=("qingyuan.yangshan.jyj",),
        title="关于开展电子公文试点的通知", doc_number="阳府办〔2011〕3号", priority="加急",
        cc=("qingyuan.yangshan.xwb",),
        fields={"issuer": "阳山县人民政府办公室", "date": "2011-08-20", "signer": "王五"},
    )
    meta = DocumentMeta.from_any(manifest)
    assert (meta.issuer, meta.title, meta.doc_number, meta.priority) == (
        "阳山县人民政府办公室", "关于开展电子公文试点的通知", "阳府办〔2011〕3号", "加急")
    assert meta.date == dt.date(2011, 8, 20) and meta.signer == "王五"
    assert meta.cc == []  # addresses are not 抄送机关 names


def test_closing_punctuation_never_hangs_outside_the_type_area() -> None:
    """28 characters then a full stop: the stop may not start the next line, nor hang past
    156 mm; the 28th character goes down with it (推出)."""
    from docex.documents.compose import CELL, _Doc, _wrap
    from docex.pki.fonts import FontRole

    doc = _Doc()
    text = "各" * 28 + "。后文"
    lines = _wrap(doc, text, FontRole.SONG, 16.0, 156.0, 156.0)
    assert lines[0] == "各" * 27 and lines[1].startswith("各。")
    assert all(doc.width(line, FontRole.SONG, 16.0) <= 156.0 + 0.01 for line in lines)
    assert abs(doc.width("各" * 28, FontRole.SONG, 16.0) - 28 * CELL) < 0.01  # 28 fill the 版心
    lines = _wrap(doc, "各" * 27 + "”。后", FontRole.SONG, 16.0, 156.0, 156.0)
    assert lines[0] == "各" * 26 and lines[1].startswith("各”。")


def test_titles_break_between_phrases() -> None:
    from docex.documents.compose import _balanced_title

    assert _balanced_title(None, "阳山县人民政府关于推行电子公文交换系统的通知") == [  # type: ignore[arg-type]
        "阳山县人民政府关于推行", "电子公文交换系统的通知"]
    assert _balanced_title(None, "阳山县信息中心关于印发县电子公文交换系统安全管理办法的通知") == [  # type: ignore[arg-type]
        "阳山县信息中心关于印发", "县电子公文交换系统安全管理办法的通知"]
    assert _balanced_title(None, "关于做好电子公文交换工作的通知") == ["关于做好电子公文交换工作的通知"]  # type: ignore[arg-type]
