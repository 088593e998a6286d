"""The agent's local store (SQLite): the outbox it owes the broker, what it sent and each
recipient's state, what it received, what it quarantined. Small and single-machine; the
schema is created on first use and versioned in `settings`."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, defer, mapped_column, sessionmaker

from docex.protocols import localtime
from docex.protocols.safepath import private_sqlite

SCHEMA_VERSION = "1"


class Base(DeclarativeBase):
    pass


def utcnow() -> dt.datetime:
    return localtime.utcnow()


class Outgoing(Base):
    """Transactional outbox: envelopes, receipts, requests waiting to be published."""

    __tablename__ = "outgoing"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")


class OutgoingChunks(Base):
    """A large document's big file, published chunk by chunk after its envelope
    (docex.agent.large): `next_index` is the first chunk the broker has not confirmed, so a
    restarted agent resumes there. The file stays where it was given; every chunk rebuilt
    from it is checked against the digest the envelope committed to."""

    __tablename__ = "outgoing_chunks"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    chunk_key: Mapped[bytes] = mapped_column(LargeBinary)  # chunks.json (holds the chunk key)
    digests: Mapped[bytes] = mapped_column(LargeBinary)  # the header's chunk list (JSON)
    count: Mapped[int] = mapped_column(Integer)
    next_index: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Sent(Base):
    __tablename__ = "sent"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    doc_number: Mapped[str] = mapped_column(String(120))
    priority: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    state: Mapped[str] = mapped_column(String(30), default="queued")  # queued | sent | rejected


class Held(Base):
    """A document held before packing: a recipient is not in our directory yet (nor known
    to be nowhere). Released when the directory knows it or the hub answers paper route."""

    __tablename__ = "held"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    draft: Mapped[bytes] = mapped_column(LargeBinary)  # JSON: the Draft, files base64
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SentRecipient(Base):
    """The sender's view of one recipient, kept current from receipts and notices."""

    __tablename__ = "sent_recipients"
    __table_args__ = (UniqueConstraint("message_id", "recipient"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    recipient: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(30), default="queued")
    at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    code: Mapped[str] = mapped_column(String(40), default="")
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # signed proof


class Received(Base):
    __tablename__ = "received"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender: Mapped[str] = mapped_column(String(200))
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(Text)
    doc_number: Mapped[str] = mapped_column(String(120))
    priority: Mapped[str] = mapped_column(String(10))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    path: Mapped[str] = mapped_column(Text)
    envelope_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="delivered")  # delivered | signed_for | returned
    seal_status: Mapped[str] = mapped_column(String(20), default="none")  # valid | none
    person: Mapped[str] = mapped_column(String(120), default="")
    reason: Mapped[str] = mapped_column(Text, default="")


class Quarantined(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(200), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    code: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AwaitingTrust(Base):
    """A document whose signer's CA we do not trust yet although our hub let it through: our
    copy of the hub's anchors lags behind (a link was just made). Kept here so the broker's
    copy can be acked; tried again when our trust changes; quarantined as
    certificate_untrusted once `trust_wait_minutes` have passed since it came."""

    __tablename__ = "awaiting_trust"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # of the envelope, as in quarantine
    message_id: Mapped[str] = mapped_column(String(200), index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    since: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Its cover, from the routing header (our hub verified it, we cannot yet), to show it
    # while it waits; the sender's name from our directory when it knows the sender.
    sender: Mapped[str] = mapped_column(String(200), default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    doc_number: Mapped[str] = mapped_column(String(120), default="")
    priority: Mapped[str] = mapped_column(String(10), default="")


# Columns added to a table after agent.db files were made with it: added in place.
_ADDED_COLUMNS = {"awaiting_trust": ("sender", "sender_name", "title", "doc_number", "priority")}


def awaiting_trust(session: Session) -> list[AwaitingTrust]:
    """The documents waiting for their signer's CA, oldest first, without their bytes."""
    return list(session.execute(select(AwaitingTrust).options(defer(AwaitingTrust.body))
                                .order_by(AwaitingTrust.since)).scalars())


class Notice(Base):
    """Every signed notice the hub sent about our documents (a refusal with its code, the
    paper route, expiry, reminders), kept as received: the hub's word, provable later."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(200), index=True)
    event: Mapped[str] = mapped_column(String(30))
    code: Mapped[str] = mapped_column(String(40), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Recall(Base):
    """A recall (撤销): ours of a document we sent (`out`), or the sender's of one we
    received (`in`), kept as signed."""

    __tablename__ = "recalls"
    __table_args__ = (UniqueConstraint("message_id", "direction"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # out | in
    sender: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    person: Mapped[str] = mapped_column(String(120), default="")
    outcome: Mapped[str] = mapped_column(String(20), default="")  # in: recalled | kept (we had signed for it)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SentEvent(Base):
    """Each thing that happened to one recipient of a document we sent (delivered, signed
    for by whom, returned why, reminded, recalled), with its time: the desk's 已发 view."""

    __tablename__ = "sent_events"
    __table_args__ = (UniqueConstraint("message_id", "recipient", "event"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    recipient: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(40))
    person: Mapped[str] = mapped_column(String(120), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Action(Base):
    """What a person did at this terminal (desk or API): who (name and certificate serial,
    or the API token's label), what, on which document. Receipts and recalls moreover carry
    the person's own signature."""

    __tablename__ = "actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    serial: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class EvidenceRow(Base):
    """Every signed receipt this unit sent or received, each copy kept as it was (the hub's
    timestamped copy of our own receipt too): nothing is overwritten (docex.agent.evidence)."""

    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(200), index=True)
    event: Mapped[str] = mapped_column(String(30))
    issuer: Mapped[str] = mapped_column(String(200), default="")
    direction: Mapped[str] = mapped_column(String(10))  # sent | received
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KeptEnvelope(Base):
    """The envelope a document travelled in and its inner signed package, kept as evidence
    of what was sent or received (the sender cannot decrypt its own envelope)."""

    __tablename__ = "kept_envelopes"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))  # sent | received
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    inner: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


def _add_columns(engine: Engine) -> None:
    tables = inspect(engine)
    for table, names in _ADDED_COLUMNS.items():
        have = {c["name"] for c in tables.get_columns(table)}
        for name in names:
            if name not in have:  # names from the list above, never from input
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} TEXT NOT NULL DEFAULT ''")


class AgentStore:
    def __init__(self, url: str) -> None:
        private_sqlite(url)
        self.engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: object, _record: object) -> None:
            dbapi_conn.isolation_level = None  # type: ignore[attr-defined]
            cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an acked document must survive power loss
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: object) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]

        Base.metadata.create_all(self.engine)
        _add_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # `changed()`: PRAGMA data_version moves when another connection commits.
        self._watch: sqlite3.Connection | None = None
        self._watch_version: int | None = None
        self._watch_lock = threading.Lock()
        with self.session() as s:
            if s.get(Setting, "schema_version") is None:
                s.add(Setting(key="schema_version", value=SCHEMA_VERSION))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def changed(self) -> bool:
        """True when a commit happened since the last call (the first call: True). Costs one
        PRAGMA on a connection of its own, no transaction: the outbox poll of an idle agent
        (125 of them on one machine) stays nearly free."""
        with self._watch_lock:
            if self._watch is None:
                self._watch = sqlite3.connect(self.engine.url.database or ":memory:", timeout=30,
                                              isolation_level=None, check_same_thread=False)
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
            if version == self._watch_version:
                return False
            self._watch_version = version
            return True

    def dispose(self) -> None:
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
                self._watch_version = None  # versions are per connection
        self.engine.dispose()
