"""Message ids are chosen by the sender, so every parser checks their form: a UUID in its
canonical text form (8-4-4-4-12 hex digits) and nothing else. A value of that shape can
name a file, a queue key or a database row without any further escaping."""

from __future__ import annotations

import re

from docex.protocols.errors import DocexError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_message_id(value: object) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def check_message_id(value: object, *, code: str = "malformed_envelope", what: str = "message id") -> str:
    """`value` if it is a canonical (lower-case) UUID; a named refusal otherwise."""
    if not is_message_id(value):
        shown = repr(value)[:80]
        raise DocexError(code, f"the {what} must be a UUID, not {shown}")
    return str(value)
