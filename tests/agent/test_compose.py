from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest

from docex.agent.compose import (
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
    assert rows and all("Noto" in r and " yes yes " in r for r in rows)  # CJK faces embedded, subset


def test_body_pages_signature_and_imprint(doc: tuple[bytes, Path]) -> None:
    pdf, path = doc
    pages = _pages(path)
    assert pages >= 2
    last = _text(path, pages)
    assert "阳山县人民政府" in last and "2011年9月16日" in last and "（此件公开发布）" in last
    assert "抄送：县委办公室、县人大常委会办公室、县政协办公室。" in last
    assert re.search(r"阳山县人民政府办公室\s+2011年9月16日印发", last)
    assert re.search(rf"—\s*{pages}\s*—", last)
    # The imprint (版记) is the last thing on the page, under the signature.
    assert last.index("2011年9月16日") < last.index("抄送") < last.index("印发")

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
    assert lines and max(len(line.replace(" ", "")) for line in lines) <= 29  # 28 + a hanging mark
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
