"""A unique beginning of a message id stands for the id; an ambiguous one is refused
with the candidates; an exact id always wins."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from docex.cli.ids import resolve
from docex.hub.db import Database, migrate
from docex.hub.models import Document
from docex.protocols.errors import DocexError

IDS = ["3f2a9c10-0000-4000-8000-000000000001", "3f2a9c10-0000-4000-8000-000000000002",
       "7b11e0aa-0000-4000-8000-000000000003"]


def test_prefixes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    db = Database(url)
    now = dt.datetime.now(dt.UTC)
    with db.session() as s:
        for i in IDS:
            s.add(Document(message_id=i, sender="a.b", title="t", doc_number="n", envelope_sha256="0" * 64,
                           created_at=now, accepted_at=now))
    with db.read() as s:
        assert resolve(s, Document.message_id, "7b11") == IDS[2]
        assert resolve(s, Document.message_id, IDS[0]) == IDS[0]
        assert resolve(s, Document.message_id, "3f2a9c10-0000-4000-8000-000000000002") == IDS[1]
        assert resolve(s, Document.message_id, "7b1") == "7b1"  # too short to guess from
        assert resolve(s, Document.message_id, "ffff") == "ffff"  # the caller says it is unknown
        assert resolve(s, Document.message_id, "3f2a%") == "3f2a%"  # no LIKE wildcards from people
        with pytest.raises(DocexError, match="beginning of 2 ids") as exc:
            resolve(s, Document.message_id, "3f2a")
        assert exc.value.code == "ambiguous_id"
    db.dispose()
