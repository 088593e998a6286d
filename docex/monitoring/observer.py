"""The metrics seam: services report what happened to an Observer and never touch
prometheus_client themselves (the shape of dramatiq's Prometheus middleware).

The hub, agents and bridge hold one observer each (NullObserver when metrics are off) and
call its hooks at the points where an effect has become durable. An observer must never
break the service: MultiObserver swallows and logs whatever a member raises.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class Observer(Protocol):
    # --- hub ---
    def document_accepted(
        self, sender: str, recipients: int, size: int, intake_seconds: float
    ) -> None:
        """Intake recorded a document (one transaction, audited)."""

    def document_rejected(self, code: str) -> None:
        """Intake refused an envelope with a stable error code."""

    def delivery_state(self, state: str) -> None:
        """One recipient's delivery moved into `state` (a transition, not a level)."""

    def receipt(self, event: str) -> None:
        """The hub recorded a receipt (delivered, signed_for, returned, ...)."""

    def delivered(self, latency_seconds: float) -> None:
        """End to end: accepted by the hub -> delivered receipt, for one recipient."""

    def signed_for(self, latency_seconds: float) -> None:
        """Delivered -> signed for (签收), for one recipient."""

    # --- agent ---
    def agent_sent(self) -> None:
        """The agent's outbox published a document and the broker confirmed it."""

    def agent_received(self) -> None:
        """The agent stored a received document in its inbox."""

    def agent_quarantined(self, code: str) -> None:
        """The agent refused what it received and kept it aside."""

    # --- link (bridge) ---
    def link_forwarded(self, link: str, direction: str, size: int) -> None:
        """The bridge moved one envelope across `link`; direction is "out" or "in"."""

    def link_error(self, link: str, code: str) -> None:
        """The bridge failed to move an envelope (it stays in the backlog)."""


class NullObserver:
    """Metrics off: every hook does nothing."""

    def document_accepted(
        self, sender: str, recipients: int, size: int, intake_seconds: float
    ) -> None:
        pass

    def document_rejected(self, code: str) -> None:
        pass

    def delivery_state(self, state: str) -> None:
        pass

    def receipt(self, event: str) -> None:
        pass

    def delivered(self, latency_seconds: float) -> None:
        pass

    def signed_for(self, latency_seconds: float) -> None:
        pass

    def agent_sent(self) -> None:
        pass

    def agent_received(self) -> None:
        pass

    def agent_quarantined(self, code: str) -> None:
        pass

    def link_forwarded(self, link: str, direction: str, size: int) -> None:
        pass

    def link_error(self, link: str, code: str) -> None:
        pass


HOOKS: tuple[str, ...] = tuple(name for name in vars(NullObserver) if not name.startswith("_"))


class MultiObserver:
    """Fans every hook out to several observers; one failing member never reaches the
    caller nor the other members."""

    def __init__(self, *observers: Observer) -> None:
        self.observers: tuple[Observer, ...] = observers

    def _fan_out(self, hook: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:
                log.exception("observer %s failed in %s", type(observer).__name__, hook)

    def document_accepted(
        self, sender: str, recipients: int, size: int, intake_seconds: float
    ) -> None:
        self._fan_out("document_accepted", sender, recipients, size, intake_seconds)

    def document_rejected(self, code: str) -> None:
        self._fan_out("document_rejected", code)

    def delivery_state(self, state: str) -> None:
        self._fan_out("delivery_state", state)

    def receipt(self, event: str) -> None:
        self._fan_out("receipt", event)

    def delivered(self, latency_seconds: float) -> None:
        self._fan_out("delivered", latency_seconds)

    def signed_for(self, latency_seconds: float) -> None:
        self._fan_out("signed_for", latency_seconds)

    def agent_sent(self) -> None:
        self._fan_out("agent_sent")

    def agent_received(self) -> None:
        self._fan_out("agent_received")

    def agent_quarantined(self, code: str) -> None:
        self._fan_out("agent_quarantined", code)

    def link_forwarded(self, link: str, direction: str, size: int) -> None:
        self._fan_out("link_forwarded", link, direction, size)

    def link_error(self, link: str, code: str) -> None:
        self._fan_out("link_error", link, code)


class RecordingObserver(NullObserver):
    """Remembers every call, for unit tests of services (pure logic, no Prometheus)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def count(self, hook: str, *args: Any) -> int:
        """How often `hook` was called (with exactly `args`, when given)."""
        with self._lock:
            return sum(1 for h, a in self.calls if h == hook and (not args or a == args))

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(h for h, _ in self.calls)

    def __getattribute__(self, name: str) -> Any:
        if name in HOOKS:
            calls = object.__getattribute__(self, "calls")
            lock = object.__getattribute__(self, "_lock")

            def record(*args: Any) -> None:
                with lock:
                    calls.append((name, args))

            return record
        return object.__getattribute__(self, name)
