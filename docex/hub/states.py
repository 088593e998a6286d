"""Per-recipient delivery states and the order they move in.

    accepted -> routed -> delivered -> signed_for | returned
    rejected (code) | expired | paper_route          (ends)
A later event never moves a delivery back: a `delivered` receipt that arrives after the
`signed_for` one only fills in its time."""

from __future__ import annotations

ACCEPTED = "accepted"
ROUTED = "routed"
DELIVERED = "delivered"
SIGNED_FOR = "signed_for"
RETURNED = "returned"
REJECTED = "rejected"
EXPIRED = "expired"
PAPER_ROUTE = "paper_route"

ALL = (ACCEPTED, ROUTED, DELIVERED, SIGNED_FOR, RETURNED, REJECTED, EXPIRED, PAPER_ROUTE)
FINAL = frozenset({SIGNED_FOR, RETURNED, REJECTED, EXPIRED, PAPER_ROUTE})
OPEN = frozenset({ACCEPTED, ROUTED, DELIVERED})

_RANK = {ACCEPTED: 0, ROUTED: 1, DELIVERED: 2, SIGNED_FOR: 3, RETURNED: 3, REJECTED: 3, EXPIRED: 3, PAPER_ROUTE: 3}

# receipt event -> delivery state
EVENT_STATE = {"delivered": DELIVERED, "signed_for": SIGNED_FOR, "returned": RETURNED, "refused": REJECTED}


def advances(current: str, new: str) -> bool:
    return _RANK[new] > _RANK[current]
