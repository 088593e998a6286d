"""Peer-given values in log lines: no line breaks, escapes or bidi controls get through, and
the length is bounded."""

from __future__ import annotations

from docex.protocols.logsafe import loggable


def test_control_and_format_characters_are_shown_not_written() -> None:
    forged = "abc\n2026-12-02 10:00:00 INFO docex.hub: all good\r\x1b[2J\u202eevil\u2028x\x00"
    shown = loggable(forged)
    assert all(ch.isprintable() for ch in shown)
    assert "\\x0a" in shown and "\\x0d" in shown and "\\x1b" in shown and "\\u202e" in shown and "\\u2028" in shown
    assert loggable("关于国庆节值班的通知 阳府办〔2011〕45号") == "关于国庆节值班的通知 阳府办〔2011〕45号"
    assert loggable(b"id\n") == "id\\x0a" and loggable(None) == ""


def test_length_is_bounded() -> None:
    shown = loggable("x" * 10_000, limit=50)
    assert shown == "x" * 50 + "…(+9950)"
