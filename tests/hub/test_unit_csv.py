"""Unit lists as Excel and WPS save them: every encoding, every delimiter, Chinese or
English headers, and every row not registered reported with its line and reason."""

from __future__ import annotations

import pytest

from docex.hub import unit_csv
from docex.protocols.errors import DocexError

PREFIX = "qingyuan.yangshan"
ROWS = [("qingyuan.yangshan.jyj", "阳山县教育局", "government"),
        ("qingyuan.yangshan.kjj", "阳山县科学技术局（含地震局）", "government")]


def _text(delimiter: str, header: tuple[str, ...] = ("地址", "名称", "类型")) -> str:
    lines = [delimiter.join(header)] + [delimiter.join(r) for r in ROWS]
    return "\r\n".join(lines) + "\r\n"  # Excel writes CRLF


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_every_encoding_and_delimiter_reads_the_same(encoding: str, delimiter: str) -> None:
    units = unit_csv.parse(_text(delimiter).encode(encoding))
    assert [(u.address, u.name, u.kind) for u in units.rows] == ROWS
    assert units.delimiter == delimiter and not units.skipped
    assert units.encoding == {"gbk": "gb18030", "utf-8-sig": "utf-8-sig"}.get(encoding, encoding)
    assert [u.line for u in units.rows] == [2, 3]


def test_gb18030_only_characters_survive() -> None:
    text = "address,name\r\nqingyuan.yangshan.xx,𠀋阳山县某局\r\n"  # outside GBK: four-byte GB18030
    assert unit_csv.parse(text.encode("gb18030")).rows[0].name == "𠀋阳山县某局"


def test_every_row_not_registered_has_its_line_and_reason() -> None:
    text = ("address;name;kind\n"
            "qingyuan.yangshan.jyj;阳山县教育局;government\n"
            ";无地址的单位;\n"                       # line 3: no address
            "\n"                                     # blank lines are not rows
            "Qingyuan Yangshan!;错的地址;\n"          # line 5: bad address
            "qingyuan.yangshan.jyj;重复;\n"           # line 6: duplicate of line 2
            "qingyuan.yingde.zfb;英德市政府办;\n"     # line 7: another county
            "qingyuan.yangshan.mzj;民政局;x;extra\n"  # line 8: too many fields
            "qingyuan.yangshan.kjj;科技局;\n")        # line 9: already registered
    units = unit_csv.parse(text.encode("gbk"))
    todo, skipped = unit_csv.plan(units, prefix=PREFIX, known=["qingyuan.yangshan.kjj"])
    assert [u.address for u in todo] == ["qingyuan.yangshan.jyj"]
    assert [(r.line, r.code) for r in skipped] == [
        (3, "bad_csv"), (5, "bad_address"), (6, "duplicate_row"), (7, "outside_prefix"), (8, "bad_csv"),
        (9, "already_registered")]
    assert "line 2" in skipped[2].reason
    assert [r.refused for r in skipped] == [True, True, True, False, True, False]


def test_a_file_without_a_header_or_not_text_is_refused_with_a_reason() -> None:
    with pytest.raises(DocexError, match="address,name") as exc:
        unit_csv.parse("qingyuan.yangshan.jyj,教育局\n".encode())
    assert exc.value.code == "bad_csv"
    with pytest.raises(DocexError, match="not UTF-8, GBK or GB18030"):
        unit_csv.parse(b"address,name\n\x81\x30\xff\xff\n")
    with pytest.raises(DocexError, match="empty"):
        unit_csv.parse(b"")
