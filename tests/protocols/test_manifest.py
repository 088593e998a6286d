"""The manifest: validation of the GB/T 9704 metadata and its JSON form."""

from __future__ import annotations

import dataclasses

import pytest

from docex.pki.errors import PkiError
from docex.protocols.manifest import FileEntry, Manifest, new_message_id

A, B, C = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"


def _m(**kw: object) -> Manifest:
    base = Manifest(new_message_id(), A, (B,), "关于开展电子公文交换的通知", "阳办发〔2011〕42号")
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_json_round_trip_keeps_chinese() -> None:
    m = _m(cc=(C,), priority="特急", classification="内部", fields={"signer": "李四", "date": "2011年8月24日"},
           files=(FileEntry("正文.pdf", "ab" * 32, 10, "document"),))
    raw = m.to_json()
    assert "阳办发〔2011〕42号".encode() in raw
    assert Manifest.from_json(raw) == m.validate()


def test_all_recipients_keeps_order_without_duplicates() -> None:
    assert _m(recipients=(B, C), cc=(C, A)).all_recipients == (B, C, A)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"classification": "秘密"}, "classified"),
        ({"classification": "机密"}, "classified"),
        ({"classification": "绝密"}, "classified"),
        ({"classification": "top secret"}, "classified"),
        ({"priority": "urgent"}, "bad_metadata"),
        ({"recipients": ()}, "bad_metadata"),
        ({"recipients": ("Not An Address",)}, "bad_metadata"),
        ({"sender": "../x"}, "bad_metadata"),
        ({"title": "  "}, "bad_metadata"),
        ({"message_id": "42"}, "bad_metadata"),
        ({"fields": {"colour": "red"}}, "bad_metadata"),
    ],
)
def test_validation(change: dict[str, object], code: str) -> None:
    with pytest.raises(PkiError) as exc:
        _m(**change).validate()
    assert exc.value.code == code


@pytest.mark.parametrize("raw", [b"", b"[]", b"{}", b'{"message_id": 1}', b"\xff\xfe", b'{"files": [1]}'])
def test_from_json_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(PkiError) as exc:
        Manifest.from_json(raw)
    assert exc.value.code == "malformed_envelope"
