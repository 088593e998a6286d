"""Reading the county's unit list as Excel and WPS save it: UTF-8 (with or without BOM),
GBK/GB18030 ("CSV (逗号分隔)" on a Chinese Windows), UTF-16 ("Unicode 文本"); comma,
semicolon or tab between fields; English or Chinese headers. Every row that will not be
registered is reported with its line number and reason, none vanish silently."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from docex.protocols.address import check_address, is_under
from docex.protocols.errors import DocexError

# header synonyms -> field (case-insensitive, surrounding blanks ignored)
HEADERS = {
    "address": "address", "地址": "address", "单位地址": "address", "交换地址": "address",
    "name": "name", "名称": "name", "单位名称": "name",
    "kind": "kind", "类型": "kind", "单位类型": "kind",
    "building": "building", "楼宇": "building", "办公楼": "building",
    "existing_certificate": "existing_certificate", "现有证书": "existing_certificate",
    "phase": "phase", "阶段": "phase", "推行阶段": "phase",
}
DELIMITERS = ",;\t"


@dataclass(frozen=True)
class CsvUnit:
    address: str
    name: str
    kind: str = ""
    building: str = ""
    existing_certificate: str = ""
    line: int = 0


@dataclass(frozen=True)
class SkippedRow:
    line: int
    address: str
    code: str  # skipped: already_registered, outside_prefix; refused: anything else
    reason: str

    @property
    def refused(self) -> bool:
        return self.code not in ("already_registered", "outside_prefix", "not_selected")


@dataclass
class UnitList:
    encoding: str
    delimiter: str
    rows: list[CsvUnit] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)


def decode(data: bytes) -> tuple[str, str]:
    """The text and the encoding it was saved in."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:  # GB18030 is a superset of GBK and GB2312: what Chinese Excel/WPS write
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise DocexError("bad_csv", f"not UTF-8, GBK or GB18030 text (byte {exc.start}); save it again as CSV") from exc


def sniff_delimiter(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return csv.Sniffer().sniff(first, delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: first.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def parse(data: bytes) -> UnitList:
    """Rows with an address and a name, and every other row with its reason."""
    text, encoding = decode(data)
    delimiter = sniff_delimiter(text)
    result = UnitList(encoding=encoding, delimiter=delimiter)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [HEADERS.get(c.strip().lower(), "") for c in cells]
            if "address" not in header or "name" not in header:
                raise DocexError("bad_csv", f"line {line}: the first row must name the columns, at least "
                                            "address,name (or 地址,名称); found: " + ", ".join(c.strip() for c in cells))
            continue
        values = {key: cells[i].strip() for i, key in enumerate(header) if key and i < len(cells)}
        address, name = values.get("address", ""), values.get("name", "")
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
            result.skipped.append(SkippedRow(line, address, "bad_csv", f"{len(cells)} fields, the header has {len(header)}"))
            continue
        if not address or not name:
            result.skipped.append(SkippedRow(line, address, "bad_csv", "address and name are both required"))
            continue
        try:
            check_address(address)
        except DocexError as exc:
            result.skipped.append(SkippedRow(line, address, "bad_address", exc.message))
            continue
        result.rows.append(CsvUnit(address=address, name=name, kind=values.get("kind", ""),
                                   building=values.get("building", ""),
                                   existing_certificate=values.get("existing_certificate", ""), line=line))
    if header is None:
        raise DocexError("bad_csv", "the file is empty")
    return result


def read(path: str | Path) -> UnitList:
    return parse(Path(path).read_bytes())


def plan(units: UnitList, *, prefix: str, known: Iterable[str]) -> tuple[list[CsvUnit], list[SkippedRow]]:
    """Which rows to register; the rest (duplicates in the file, outside this hub's
    prefix, already registered) with their line numbers, after the parse refusals."""
    registered = set(known)
    seen: dict[str, int] = {}
    todo: list[CsvUnit] = []
    skipped = list(units.skipped)
    for row in units.rows:
        if row.address in seen:
            skipped.append(SkippedRow(row.line, row.address, "duplicate_row", f"same address as line {seen[row.address]}"))
        elif not is_under(row.address, prefix) or row.address == prefix:
            skipped.append(SkippedRow(row.line, row.address, "outside_prefix", f"not under this hub's prefix {prefix}"))
        elif row.address in registered:
            skipped.append(SkippedRow(row.line, row.address, "already_registered", "already registered"))
        else:
            todo.append(row)
        seen.setdefault(row.address, row.line)
    skipped.sort(key=lambda r: r.line)
    return todo, skipped
