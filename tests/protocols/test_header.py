"""The routing header: the only part of an envelope a hub reads."""

from __future__ import annotations

import pytest

from docex.pki.errors import PkiError
from docex.protocols.header import RoutingHeader
from docex.protocols.version import PROTOCOL_VERSION


def test_round_trip_and_recipients() -> None:
    header = RoutingHeader("3f2b8c1e-2d4a-4c6b-9e8f-0a1b2c3d4e5f", "qingyuan.yangshan.xxzx", ("qingyuan.yangshan.zfb",),
                           ("qingyuan.yangshan.fgj", "qingyuan.yangshan.zfb"), "特急", "", 1234,
                           "2011-08-25T01:00:00.000+00:00", "阳办发〔2011〕42号", "试点通知")
    assert RoutingHeader.from_json(header.to_json()) == header
    assert header.protocol_version == PROTOCOL_VERSION
    assert header.all_recipients == ("qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj")
    assert header.to_dict()["recipients"] == ["qingyuan.yangshan.zfb"]
    assert "特急" in header.to_json().decode()


@pytest.mark.parametrize("raw", [b"", b"null", b"{}", b'{"size": "big"}', b"\x80"])
def test_garbage_is_malformed(raw: bytes) -> None:
    with pytest.raises(PkiError) as exc:
        RoutingHeader.from_json(raw)
    assert exc.value.code == "malformed_envelope"
