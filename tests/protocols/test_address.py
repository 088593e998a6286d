"""Addresses and prefix routing."""

from __future__ import annotations

import pytest

from docex.pki.errors import PkiError
from docex.protocols.address import Route, check_address, is_under, route_for


def test_check_address() -> None:
    assert check_address("qingyuan.yangshan.xxzx") == "qingyuan.yangshan.xxzx"
    for bad in ("", "Qingyuan", "qingyuan..x", "qingyuan.yangshan.", "1abc", "a b", "qingyuan/yangshan"):
        with pytest.raises(PkiError) as exc:
            check_address(bad)
        assert exc.value.code == "bad_metadata"


def test_is_under() -> None:
    assert is_under("qingyuan.yangshan.xxzx", "qingyuan.yangshan")
    assert is_under("qingyuan.yangshan", "qingyuan.yangshan")
    assert not is_under("qingyuan.yangshanx.a", "qingyuan.yangshan")
    assert not is_under("qingyuan", "qingyuan.yangshan")


@pytest.mark.parametrize(
    ("address", "route"),
    [
        ("qingyuan.yangshan.xxzx", Route("local")),
        ("qingyuan.yangshan.qitang.zf", Route("child", "qingyuan.yangshan.qitang")),
        ("qingyuan.yangshan.qitang.cun.a", Route("child", "qingyuan.yangshan.qitang.cun")),
        ("qingyuan.szf", Route("parent", "parent")),
    ],
)
def test_route_for(address: str, route: Route) -> None:
    children = ["qingyuan.yangshan.qitang", "qingyuan.yangshan.qitang.cun"]
    assert route_for(address, "qingyuan.yangshan", children, has_parent=True) == route


def test_no_parent_means_paper() -> None:
    assert route_for("guangdong.sheng", "qingyuan.yangshan", [], has_parent=False) == Route("paper")
