"""Fuzz the package reader (the ZIP inside the inner signature): random bytes, damaged
genuine packages, and ZIPs written byte for byte with hostile names, lying sizes and CRCs,
odd methods, duplicates and bombs."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from docex.protocols import package as pkg
from docex.protocols.errors import DocexError
from tests.protocols import forge
from tests.security.fuzzing import expect_parse_or_named_error, fuzz, mutations

SENDER, TO = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"
FILES = {"正文.txt": "关于开展测试的通知".encode() * 20, "附件1.bin": bytes(range(256)) * 4}
MANIFEST = forge.manifest(SENDER, [TO], FILES)
GENUINE = pkg.build(MANIFEST, FILES)
MAX_UNPACKED = 4 * 1024 * 1024  # small, so that lying sizes reach the bound quickly

NAMES = st.sampled_from([
    "manifest.json", "正文.txt", "附件1.bin", "../x", "/etc/passwd", "a/../../b", "\\win", "C:x", ".hidden",
    "dir/", "a\x00b", "CON", "e\u0301.txt", "é.txt", "x" * 300,
]) | st.text(max_size=20)


@st.composite
def raw_entries(draw: st.DrawFn) -> forge.RawEntry:
    name = draw(NAMES)
    data = draw(st.binary(max_size=256))
    method = draw(st.sampled_from([0, 8, 8, 12, 99]))
    stored = forge.deflate(data) if method == 8 and draw(st.booleans()) else data
    size = draw(st.sampled_from([len(data), 0, len(data) + 1, 2**31 - 1, 10 * 1024 * 1024]))
    crc = draw(st.sampled_from([zlib.crc32(data), 0]))
    return forge.RawEntry(name, stored, size, crc=crc, method=method, flags=draw(st.sampled_from([0x0800, 0, 0x0801])))


@st.composite
def hostile_zips(draw: st.DrawFn) -> bytes:
    entries = draw(st.lists(raw_entries(), max_size=5))
    if draw(st.booleans()):
        entries.insert(0, forge.entry("manifest.json", MANIFEST.to_json()))
    if draw(st.booleans()):
        entries += [forge.entry(n, d) for n, d in FILES.items()]
    if draw(st.booleans()) and entries:
        entries.append(entries[draw(st.integers(0, len(entries) - 1))])  # the same name twice
    if draw(st.booleans()):
        bomb, crc = forge.zeros_bomb(draw(st.integers(1, 8)))
        entries.append(forge.RawEntry(draw(NAMES), bomb, draw(st.sampled_from([100, 8 << 20])), crc))
    return forge.raw_zip(entries)


def _read(raw: bytes) -> None:
    expect_parse_or_named_error(lambda: pkg.read(raw, max_unpacked=MAX_UNPACKED))


def test_fuzz_package_damaged() -> None:
    @given(mutations(GENUINE))
    def target(raw: bytes) -> None:
        _read(raw)

    fuzz("package (damaged)", target)


def test_fuzz_package_hostile_zip() -> None:
    @given(hostile_zips())
    def target(raw: bytes) -> None:
        _read(raw)

    fuzz("package (hostile ZIP)", target)


def test_a_zip_claiming_a_future_version_is_a_named_refusal() -> None:
    # Found by the one-hour run: zipfile raises NotImplementedError while reading a central
    # directory whose "version needed to extract" is past 6.3.
    at = GENUINE.index(b"PK\x01\x02")
    future = GENUINE[: at + 6] + bytes([127, 0]) + GENUINE[at + 8 :]
    try:
        pkg.read(future)
    except DocexError as exc:
        assert exc.code == "malformed_envelope"
    else:
        raise AssertionError("a ZIP claiming version 12.7 was read")
