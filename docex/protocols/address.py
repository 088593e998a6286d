"""Hierarchical addresses, read left to right like domain names: `qingyuan.yangshan.xxzx`
is the information centre (xxzx) of Yangshan county in Qingyuan city. A hub owns a prefix;
routing is prefix matching."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from docex.pki.names import is_valid_address
from docex.protocols.errors import DocexError


def check_address(address: str) -> str:
    if not is_valid_address(address):
        raise DocexError("bad_metadata", f"{address!r} is not a valid address (e.g. qingyuan.yangshan.xxzx)")
    return address


def is_under(address: str, prefix: str) -> bool:
    """True when `address` lies in the subtree of `prefix` (or is the prefix itself)."""
    return address == prefix or address.startswith(prefix + ".")


@dataclass(frozen=True)
class Route:
    """Where a hub sends an address: `local` (a unit queue), `child` (a child link),
    `parent` (the parent link) or `paper` (nobody on the network)."""

    kind: str
    link: str | None = None


def route_for(address: str, prefix: str, children: Iterable[str], has_parent: bool) -> Route:
    """A hub at `prefix` delivers its own subtree, hands a child prefix's subtree to that
    child's link (longest match wins) and everything else to its parent, if it has one."""
    best: str | None = None
    for child in children:
        if is_under(address, child) and (best is None or len(child) > len(best)):
            best = child
    if best is not None:
        return Route("child", best)
    if is_under(address, prefix):
        return Route("local")
    if has_parent:
        return Route("parent", "parent")
    return Route("paper")
