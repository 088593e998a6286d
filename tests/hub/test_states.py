"""Delivery states move one way: a late or repeated event never moves a delivery back."""

from __future__ import annotations

import pytest

from docex.hub import states


@pytest.mark.parametrize(("current", "new", "moves"), [
    (states.ACCEPTED, states.ROUTED, True),
    (states.ROUTED, states.DELIVERED, True),
    (states.ACCEPTED, states.DELIVERED, True),  # a receipt may overtake the routed mark
    (states.DELIVERED, states.SIGNED_FOR, True),
    (states.DELIVERED, states.RETURNED, True),
    (states.ROUTED, states.REJECTED, True),
    (states.SIGNED_FOR, states.DELIVERED, False),  # the delivered receipt arriving late
    (states.RETURNED, states.SIGNED_FOR, False),
    (states.DELIVERED, states.DELIVERED, False),  # a repeated receipt
    (states.REJECTED, states.DELIVERED, False),
])
def test_advances_only_forward(current: str, new: str, moves: bool) -> None:
    assert states.advances(current, new) is moves


def test_every_state_is_either_open_or_final() -> None:
    assert set(states.ALL) == states.OPEN | states.FINAL
    assert not states.OPEN & states.FINAL


def test_every_receipt_event_names_a_state() -> None:
    assert states.EVENT_STATE == {"delivered": states.DELIVERED, "signed_for": states.SIGNED_FOR,
                                  "returned": states.RETURNED, "refused": states.REJECTED,
                                  "opened": states.DELIVERED}  # opened: evidence; at most "delivered"
    assert all(s in states.ALL for s in states.EVENT_STATE.values())
