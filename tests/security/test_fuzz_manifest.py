"""Fuzz the manifest parser and its validation (what the recipient reads from the package)."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from docex.protocols.manifest import Manifest
from tests.security.fuzzing import expect_parse_or_named_error, fuzz, json_values, shaped

ADDRESSES = st.sampled_from(["qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "../x", "", "Q.Y"])
FILE = shaped({
    "name": st.sampled_from(["正文.pdf", "../x", "/etc/passwd", "a\x00b", ""]) | st.text(max_size=20),
    "sha256": st.text("0123456789abcdef", min_size=0, max_size=64),
    "size": st.integers(-(2**64), 2**64),
    "role": st.sampled_from(["document", "attachment", "x"]),
})
MANIFEST = shaped({
    "message_id": st.uuids().map(str) | st.sampled_from(["../../x", "/abs/path", ""]),
    "sender": ADDRESSES,
    "recipients": st.lists(ADDRESSES, max_size=3),
    "cc": st.lists(ADDRESSES, max_size=3),
    "title": st.text(max_size=60),
    "doc_number": st.text(max_size=30),
    "priority": st.sampled_from(["特急", "加急", "平急", "x"]),
    "classification": st.sampled_from(["", "内部", "非密", "秘密", "秘密 ", "绝\u200b密", "SECRET"]) | st.text(max_size=6),
    "created_at": st.text(max_size=30),
    "fields": st.dictionaries(st.sampled_from(["signer", "date", "x"]), json_values, max_size=3) | json_values,
    "files": st.lists(FILE, max_size=3) | json_values,
})


def _parse(raw: bytes) -> None:
    expect_parse_or_named_error(lambda: Manifest.from_json(raw).validate())


def test_fuzz_manifest_bytes() -> None:
    @given(st.binary(max_size=2048))
    @example(b"[" * 100_000)
    @example(b'{"files": [' * 50_000)
    def target(raw: bytes) -> None:
        _parse(raw)

    fuzz("manifest (bytes)", target)


def test_fuzz_manifest_json() -> None:
    @given(MANIFEST | json_values)
    def target(data: object) -> None:
        _parse(json.dumps(data, ensure_ascii=False).encode())

    fuzz("manifest (JSON)", target)
