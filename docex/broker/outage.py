"""Telling a passing outage from a broken message.

A handler that fails because a dependency is down (the database, the disk) must not have
its message counted toward the dead-letter limit: the message is fine, the machine is not.
`classify` names the dependency that is down, or returns None for every other failure (which
is then retried a few times and finally dead-lettered, as a poison message should be).
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable, Iterator

import pika.exceptions

from docex.broker.errors import BrokerConnectionLost

# Errors of the disk under a folder we write to, not of the data we write.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EMFILE, errno.ENFILE})
# SQLite says "the disk" in words, not in an errno.
_SQLITE_OUTAGE = ("disk i/o error", "database or disk is full", "database is locked", "unable to open database")
# DB-API / SQLAlchemy classes that mean "could not talk to the database" (checked by name:
# this seam sits below the layers that own a database and must not import their drivers).
_DATABASE_CLASSES = frozenset({"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"})
_DATABASE_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "sqlite3")

Classifier = Callable[[BaseException], "str | None"]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def classify(exc: BaseException) -> str | None:
    """'disk', 'database' or 'broker' when `exc` (or what caused it) says a dependency is down."""
    for e in _chain(exc):
        if isinstance(e, BrokerConnectionLost | pika.exceptions.AMQPConnectionError):
            return "broker"
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return "disk"
        if isinstance(e, sqlite3.OperationalError):
            text = str(e).lower()
            if any(m in text for m in _SQLITE_OUTAGE):
                return "disk" if "disk" in text else "database"
            continue
        if isinstance(getattr(e, "orig", None), sqlite3.Error):
            continue  # SQLAlchemy's wrapper of an SQLite error: judged by the SQLite error's words
        kind = type(e)
        if kind.__name__ in _DATABASE_CLASSES and kind.__module__.split(".")[0] in _DATABASE_MODULES:
            return "database"
    return None


def never(_exc: BaseException) -> str | None:
    """A classifier for consumers with no dependency of their own."""
    return None
