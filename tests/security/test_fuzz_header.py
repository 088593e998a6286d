"""Fuzz the routing header parser (the signed attribute a hub routes on)."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from docex.protocols.header import RoutingHeader
from tests.security.fuzzing import expect_parse_or_named_error, fuzz, json_values, shaped

ADDRESSES = st.sampled_from(["qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "../../x", "", "a" * 300])
HEADER = shaped({
    "message_id": st.uuids().map(str) | st.sampled_from(["../../etc", "/abs", "", "x" * 500]),
    "sender": ADDRESSES,
    "recipients": st.lists(ADDRESSES, max_size=3),
    "cc": st.lists(ADDRESSES, max_size=3),
    "priority": st.sampled_from(["特急", "加急", "平急", "urgent"]),
    "classification": st.sampled_from(["", "内部", "秘密", "机密★5年"]),
    "size": st.integers(-(2**70), 2**70),
    "created_at": st.text(max_size=30),
    "doc_number": st.text(max_size=30),
    "title": st.text(max_size=60),
    "protocol_version": st.sampled_from(["1", "1.0", "99"]),
})
DEEP = b"[" * 100_000 + b"]" * 100_000


def _parse(raw: bytes) -> None:
    expect_parse_or_named_error(lambda: RoutingHeader.from_json(raw))


def test_fuzz_header_bytes() -> None:
    @given(st.binary(max_size=2048))
    @example(DEEP)
    @example(b'{"size": "1' + b"1" * 5000 + b'"}')
    def target(raw: bytes) -> None:
        _parse(raw)

    fuzz("routing header (bytes)", target)


def test_fuzz_header_json() -> None:
    @given(HEADER | json_values)
    def target(data: object) -> None:
        _parse(json.dumps(data, ensure_ascii=False).encode())

    fuzz("routing header (JSON)", target)
