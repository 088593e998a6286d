"""One log line per outage for the hub's scheduled jobs, not a traceback every 5 seconds.

While the database (or disk) is down every interval job fails the same way. A filter on
APScheduler's executor logger turns the first such failure into one line and drops the
rest; once every job that failed has run again successfully, one line says the outage is
over (jobs that never touch the database do not end it). Other failures (bugs) keep their
traceback."""

from __future__ import annotations

import logging
import threading
from typing import Any

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler

from docex.broker.outage import classify

log = logging.getLogger(__name__)
_WORDS = {"database": "数据库", "disk": "磁盘", "broker": "消息服务器 RabbitMQ"}


class JobOutageLog(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.outage: str | None = None
        self._failing: set[str] = set()  # ids of the jobs that failed in this outage
        self._lock = threading.Lock()

    def install(self, scheduler: BaseScheduler) -> None:
        logging.getLogger("apscheduler.executors.default").addFilter(self)
        scheduler.add_listener(self._executed, EVENT_JOB_EXECUTED)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        what = classify(exc) if exc is not None else None
        if what is None:
            return True
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        with self._lock:
            first = self.outage is None
            self.outage = what
            self._failing.add(str(getattr(job, "id", job)))
        if not first:
            return False
        record.msg = "定时任务暂停: %s 不可用, 恢复后自动继续 (scheduled jobs: %s unavailable): %s"
        record.args = (_WORDS.get(what, what), what, str(exc).splitlines()[0][:200])
        record.exc_info = None
        record.exc_text = None
        return True

    def _executed(self, event: JobExecutionEvent | Any) -> None:
        with self._lock:
            self._failing.discard(str(getattr(event, "job_id", "")))
            if self.outage is None or self._failing:
                return
            what, self.outage = self.outage, None
        log.warning("定时任务恢复: %s 已恢复 (scheduled jobs: %s back)", _WORDS.get(what, what), what)
