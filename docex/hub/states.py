"""Per-recipient delivery states and the order they move in.

    accepted -> routed -> delivered -> signed_for | returned
    rejected (code) | expired | paper_route          (ends)
    recalled (the sender withdrew it before it was signed for)
    dead_letter: a copy a consumer failed on `delivery_limit` times; open until the
                 information centre replays it (back to routed)
A later event never moves a delivery back: a `delivered` receipt that arrives after the
`signed_for` one only fills in its time. One exception: a `signed_for` receipt that crossed
a recall on the way wins over it (the recipient signed first and keeps the document)."""

from __future__ import annotations

ACCEPTED = "accepted"
ROUTED = "routed"
DELIVERED = "delivered"
SIGNED_FOR = "signed_for"
RETURNED = "returned"
REJECTED = "rejected"
EXPIRED = "expired"
PAPER_ROUTE = "paper_route"
RECALLED = "recalled"
DEAD_LETTER = "dead_letter"

ALL = (ACCEPTED, ROUTED, DELIVERED, SIGNED_FOR, RETURNED, REJECTED, EXPIRED, PAPER_ROUTE, RECALLED, DEAD_LETTER)
FINAL = frozenset({SIGNED_FOR, RETURNED, REJECTED, EXPIRED, PAPER_ROUTE, RECALLED})
OPEN = frozenset({ACCEPTED, ROUTED, DELIVERED, DEAD_LETTER})

_RANK = {ACCEPTED: 0, ROUTED: 1, DEAD_LETTER: 1, DELIVERED: 2, SIGNED_FOR: 3, RETURNED: 3, REJECTED: 3, EXPIRED: 3,
         PAPER_ROUTE: 3, RECALLED: 3}

# receipt event -> delivery state
EVENT_STATE = {"delivered": DELIVERED, "signed_for": SIGNED_FOR, "returned": RETURNED, "refused": REJECTED,
               "opened": DELIVERED}


def advances(current: str, new: str) -> bool:
    if current == RECALLED and new == SIGNED_FOR:
        return True
    return _RANK[new] > _RANK[current]
