"""Service logging: one line per event, Chinese-first messages from docex, pika quiet.

A broker outage is one line, not hundreds: pika's own connection errors (with their
tracebacks) are not logged at all (docex says what happened itself), and a warning that
repeats word for word (the same retry message from the same place) is shown once per
`REPEAT_WINDOW` seconds, the next time with how many were left out."""

from __future__ import annotations

import logging
import time

REPEAT_WINDOW = 300.0


class RepeatFilter(logging.Filter):
    """Lets the first of a run of identical warnings through, then one per window."""

    def __init__(self, window: float = REPEAT_WINDOW, clock: object = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.exc_info:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()  # type: ignore[operator]
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} (同样的消息此前 {last[1]} 条未显示 {last[1]} similar before, not shown)"
        self._seen[key] = (now, 0)
        return True


def setup(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # its connection errors: docex reports them once
    repeat = RepeatFilter()
    # Only on the handler made here: a host's own handlers (pytest's capture, an embedding
    # program's) keep seeing every line.
    for handler in root.handlers:
        if handler not in before and not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(repeat)
