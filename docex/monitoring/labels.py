"""Keeping label sets bounded: every label value passes through a guard, so a bug that
feeds a message id or a free-text error into a label costs one "other" series, not
thousands."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)

OTHER = "other"

# Delivery states of one recipient (DESIGN.md), in the order a delivery moves.
DELIVERY_STATES: tuple[str, ...] = (
    "accepted",
    "routed",
    "delivered",
    "signed_for",
    "returned",
    "rejected",
    "expired",
    "paper_route",
    "recalled",
    "dead_letter",
)

# A label value looks like a code, an address or a link name, never like prose.
_SANE = re.compile(r"^[A-Za-z0-9_.:\-]{1,80}$")


class BoundedLabel:
    """Maps raw values to label values: a fixed `allowed` set when known, otherwise the
    first `limit` distinct sane values seen; everything else becomes "other"."""

    def __init__(self, name: str, allowed: Iterable[str] | None = None, limit: int = 64) -> None:
        self.name = name
        self.allowed: frozenset[str] | None = frozenset(allowed) if allowed is not None else None
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self, value: object) -> str:
        text = str(value)
        if self.allowed is not None:
            if text in self.allowed:
                return text
            self._warn(text)
            return OTHER
        if not _SANE.match(text):
            self._warn(text)
            return OTHER
        with self._lock:
            if text in self._seen:
                return text
            if len(self._seen) < self.limit:
                self._seen.add(text)
                return text
        self._warn(text)
        return OTHER

    def _warn(self, text: str) -> None:
        if not self._warned:  # once per label: a flood of values must not flood the log
            self._warned = True
            log.warning("metric label %s: value %.40r folded into %r", self.name, text, OTHER)
