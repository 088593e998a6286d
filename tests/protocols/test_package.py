"""The package ZIP: safe names, bounded sizes, every file against its hash."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from docex.pki.errors import PkiError
from docex.protocols import package as pkg
from tests.protocols import forge

A, B = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"
FILES = {"正文.pdf": b"%PDF-1.7 body", "附件1.docx": b"attachment"}


def _code(raw: bytes, **kw: int) -> str:
    with pytest.raises(PkiError) as exc:
        pkg.read(raw, **kw)
    return exc.value.code


def test_build_and_read_round_trip() -> None:
    m = forge.manifest(A, [B], {})
    raw = pkg.build(m, FILES, main_document="正文.pdf")
    assert raw == pkg.build(m, FILES, main_document="正文.pdf")  # deterministic
    package = pkg.read(raw)
    assert package.files == FILES
    assert {f.name: (f.size, f.role) for f in package.manifest.files} == {
        "正文.pdf": (len(FILES["正文.pdf"]), "document"),
        "附件1.docx": (len(FILES["附件1.docx"]), "attachment"),
    }
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert zf.namelist()[0] == "manifest.json"


def test_compressed_files_are_stored_text_is_deflated() -> None:
    scan = os.urandom(100_000)  # like a sealed PDF or a scan: nothing left to squeeze
    text = "各乡镇人民政府，县直各单位：".encode() * 2000
    raw = pkg.build(forge.manifest(A, [B], {}), {"scan.pdf": scan, "note.txt": text})
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert zf.getinfo("scan.pdf").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("note.txt").compress_type == zipfile.ZIP_DEFLATED
    assert pkg.read(raw).files == {"scan.pdf": scan, "note.txt": text}


@pytest.mark.parametrize(
    "name", ["../x", "/etc/x", "a/b", "a\\b", ".hidden", "..", "", "manifest.json", "con:x", "a\x00b", "x" * 201]
)
def test_build_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(PkiError) as exc:
        pkg.build(forge.manifest(A, [B], {}), {name: b"x"})
    assert exc.value.code == "unsafe_filename"


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/../../x", "..\\x", "dir/", "C:\\x"])
def test_read_refuses_unsafe_names(name: str) -> None:
    files = {name: b"x"}
    assert _code(forge.package(forge.manifest(A, [B], files), files)) == "unsafe_filename"


def test_honest_bomb_is_too_large_without_inflating() -> None:
    bomb, crc = forge.zeros_bomb(300)
    m = forge.manifest(A, [B], {"bomb.bin": b""})
    raw = forge.raw_zip([forge.entry("manifest.json", m.to_json()), forge.RawEntry("bomb.bin", bomb, 300 << 20, crc)])
    assert len(raw) < 1 << 20
    tracemalloc.start()
    try:
        assert _code(raw) == "too_large"
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()


def test_bomb_that_lies_about_its_size() -> None:
    bomb, _ = forge.zeros_bomb(300)
    m = forge.manifest(A, [B], {"bomb.bin": bytes(100)})
    lying = forge.RawEntry("bomb.bin", bomb, 100, 0)
    assert _code(forge.raw_zip([forge.entry("manifest.json", m.to_json()), lying])) == "too_large"


def test_ratio_bomb_under_the_absolute_limit() -> None:
    """8 MB of zeros is under 256 MB but no document compresses 1000:1."""
    data = bytes(8 << 20)
    files = {"zeros.bin": data}
    assert _code(forge.package(forge.manifest(A, [B], files), files)) == "too_large"
    assert _code(pkg.build(forge.manifest(A, [B], {}), {"small.bin": bytes(1000)}), max_unpacked=500) == "too_large"


def test_too_many_files() -> None:
    files = {f"f{i}.txt": b"x" for i in range(pkg.MAX_FILES + 1)}
    assert _code(forge.package(forge.manifest(A, [B], files), files)) == "too_large"


def test_digest_mismatch_and_unlisted_files() -> None:
    m = forge.manifest(A, [B], {"a.txt": b"promised"})
    assert _code(forge.package(m, {"a.txt": b"delivered"})) == "digest_mismatch"
    assert _code(forge.package(m, {"a.txt": b"promised", "extra.txt": b"x"})) == "digest_mismatch"
    assert _code(forge.package(m, {})) == "digest_mismatch"


def test_malformed_packages() -> None:
    m = forge.manifest(A, [B], {"a.txt": b"x"})
    good = forge.entry("a.txt", b"x")
    assert _code(b"not a zip") == "malformed_envelope"
    assert _code(forge.raw_zip([good])) == "malformed_envelope"  # no manifest
    assert _code(forge.raw_zip([forge.entry("manifest.json", m.to_json()), good, good])) == "malformed_envelope"
    assert _code(forge.raw_zip([forge.entry("manifest.json", b"{not json"), good])) == "malformed_envelope"
    damaged = forge.RawEntry("a.txt", b"\xff" * 10, 1, 0)  # not a deflate stream
    assert _code(forge.raw_zip([forge.entry("manifest.json", m.to_json()), damaged])) == "malformed_envelope"
    encrypted = forge.RawEntry("a.txt", good.data, 1, good.crc, flags=0x0801)
    assert _code(forge.raw_zip([forge.entry("manifest.json", m.to_json()), encrypted])) == "malformed_envelope"
    bad_crc = forge.RawEntry("a.txt", good.data, 1, good.crc ^ 1)
    assert _code(forge.raw_zip([forge.entry("manifest.json", m.to_json()), bad_crc])) == "malformed_envelope"


def test_extract_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "inbox" / "msg"
    assert pkg.extract_to(target, FILES) == target
    assert {p.name: p.read_bytes() for p in target.iterdir()} == FILES
    pkg.extract_to(target, {"other.txt": b"y"})  # existing folder: left as it was
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    with pytest.raises(PkiError):
        pkg.extract_to(tmp_path / "bad", {"ok.txt": b"1", "../evil": b"2"})
    assert not (tmp_path / "bad").exists() and not (tmp_path / "evil").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["inbox"]  # no partial folder left
