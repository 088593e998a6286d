"""Values a peer chose (a message id, a publisher's login, a title, an error text naming
them), made safe for one log line: control, format and separator characters are shown as
escapes, never written (no forged log lines, no terminal escapes, no bidi tricks), and the
length is bounded."""

from __future__ import annotations

MAX_CHARS = 200


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def loggable(value: object, limit: int = MAX_CHARS) -> str:
    """`value` as text for a log line: printable characters only, at most `limit` of them
    (then '…' and how many more there were)."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
    shown = "".join(ch if ch.isprintable() else _escape(ch) for ch in text[:limit])
    return shown if len(text) <= limit else f"{shown}…(+{len(text) - limit})"
