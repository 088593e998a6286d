"""Fuzz the unit list import (`docex unit import`): any file, in any encoding Excel or WPS
might write or none, either gives rows and reported skips or a named refusal (`bad_csv`),
never a traceback."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from docex.hub import unit_csv
from tests.security.fuzzing import expect_parse_or_named_error, fuzz

HEADERS = st.sampled_from(["address,name,kind", "address,name,kind,building,existing_certificate", "地址;名称;类型",
                           "name,kind", "", "\ufeffaddress\tname", "address,address,name"])
CELLS = st.text(max_size=12) | st.sampled_from(['"', '"a""b"', "\x00", "qingyuan.yangshan.x", "qingyuan.yangshan",
                                                "=cmd|' /C calc'!A0", "\r", "a,b", "../x"])


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(st.lists(CELLS, max_size=6), max_size=5))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    text = draw(HEADERS) + "\n" + "\n".join(sep.join(r) for r in rows)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"]))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _import(raw: bytes) -> None:
    units = expect_parse_or_named_error(lambda: unit_csv.parse(raw))
    if units is not None:
        unit_csv.plan(units, prefix="qingyuan.yangshan", known=["qingyuan.yangshan.xxzx"])


def test_fuzz_csv_import() -> None:
    @given(csv_files() | st.binary(max_size=512))
    def target(raw: bytes) -> None:
        _import(raw)

    fuzz("unit CSV import", target)
