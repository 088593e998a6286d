"""Refusals keep what a publisher chose as data: its message id and login reach the log as
one bounded line (no forged entries, no terminal escapes)."""

from __future__ import annotations

import pika

from docex.broker import Delivery
from docex.hub.context import HubContext
from docex.hub.models import Rejection
from docex.hub.refusals import refuse
from tests.conftest import logged


def test_a_hostile_message_id_is_logged_escaped_and_bounded(keyed_ctx: HubContext) -> None:
    forged = "abc\n2026-12-02 10:00:00 INFO docex.hub.intake: accepted everything\r\x1b[31m\u202e" + "z" * 1000
    delivery = Delivery(body=b"junk", message_id=forged, headers={}, user_id="t1.evil\nuser", redelivered=False,
                        delivery_tag=1, properties=pika.BasicProperties(type="document"))
    with logged("docex.hub.refusals") as lines:
        refuse(keyed_ctx, delivery, None, "malformed_envelope", f"not an envelope: {forged}")
    (line,) = lines
    assert all(ch.isprintable() for ch in line) and len(line) < 1000
    assert "\\x0a2026-12-02" in line and "t1.evil\\x0auser" in line
    with keyed_ctx.db.read() as s:  # the record keeps it as data, cut to the column
        (row,) = s.query(Rejection).all()
    assert row.message_id == forged[:128]
