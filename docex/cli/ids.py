"""Message ids as people type them: the full UUID, or any unique beginning of it (as
`git` takes a commit), wherever a command takes an id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from docex.protocols.errors import DocexError

MIN_PREFIX = 4


def resolve(session: Any, column: Any, given: str) -> str:
    """The one stored id `given` starts (or is); `given` itself when none does (the
    caller's own "unknown" refusal then names it); `ambiguous_id` when several do."""
    given = given.strip()
    if session.execute(select(column).where(column == given)).first() is not None:
        return given
    if len(given) < MIN_PREFIX or any(c in given for c in "%_\\"):
        return given
    found = list(session.execute(select(column).where(column.like(f"{given}%")).distinct().limit(6)).scalars())
    if len(found) == 1:
        return str(found[0])
    if len(found) > 1:
        raise DocexError("ambiguous_id", f"{given} is the beginning of {len(found)} ids ({', '.join(found[:5])}"
                                         f"{', ...' if len(found) > 5 else ''}): type more of it")
    return given
