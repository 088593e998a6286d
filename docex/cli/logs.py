"""Service logging: one line per event, Chinese-first messages from docex, pika quiet."""

from __future__ import annotations

import logging


def setup(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pika", "apscheduler", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
