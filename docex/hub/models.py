"""The hub's tracking store (SQLAlchemy 2 typed models). SQLite (WAL) on one machine,
PostgreSQL where hub workers scale out; the schema is managed by Alembic."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from docex.protocols import localtime


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timestamps are always aware UTC in Python, whatever the database hands back
    (SQLite returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    pass


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements on the hot paths (no ORM objects)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def utcnow() -> dt.datetime:
    return localtime.utcnow()


def iso(value: dt.datetime | None) -> str | None:
    """A stored timestamp as the API and JSON show it (local time, seconds, explicit offset)."""
    return localtime.iso(value)


class Unit(Base):
    """A unit of the directory (机构): its identity, state, rollout phase, certificates."""

    __tablename__ = "units"
    address: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40), default="")
    building: Mapped[str] = mapped_column(String(60), default="")
    state: Mapped[str] = mapped_column(String(20), default="enabled")  # enabled | disabled
    phase: Mapped[str] = mapped_column(String(20), default="electronic")  # pilot|dual_track|electronic
    sign_cert: Mapped[str] = mapped_column(Text, default="")
    enc_cert: Mapped[str] = mapped_column(Text, default="")
    seal_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    broker_user: Mapped[str] = mapped_column(String(200), default="")
    cert_not_after: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Document(Base):
    """One envelope the hub accepted. The hub never holds the content, only the cover."""

    __tablename__ = "documents"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    doc_number: Mapped[str] = mapped_column(String(120), default="", index=True)
    priority: Mapped[str] = mapped_column(String(10), default="平急")
    classification: Mapped[str] = mapped_column(String(10), default="")
    size: Mapped[int] = mapped_column(Integer, default=0)
    envelope_sha256: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(120), default="local")  # local | link:<name>
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    accepted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    deadline: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The envelope's bytes live in the content store (docex.hub.content_store) under
    # envelope_sha256, until retention removes them after the last delivery closed.
    content_purged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Envelope(Base):
    """Envelope bytes as releases before the content store kept them; read as a fallback
    and moved to the content store by `content_store.adopt_legacy`. Nothing new is written."""

    __tablename__ = "envelopes"
    message_id: Mapped[str] = mapped_column(ForeignKey("documents.message_id"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Chunk(Base):
    """One chunk of a large document's big file (docex.protocols.chunks), authenticated
    against the signed header and passed on (`routed`); its bytes in the content store
    under `digest`."""

    __tablename__ = "chunks"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(10), default="routed", index=True)
    origin: Mapped[str] = mapped_column(String(200), default="")  # the broker user it came from
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class HeldChunk(Base):
    """A chunk that came before its envelope was accepted: not yet authenticated, so every
    copy is kept (a forged one must not crowd out the true one) until the envelope decides."""

    __tablename__ = "held_chunks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    origin: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class Delivery(Base):
    """One recipient of one document, and where its delivery stands."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "recipient"),
        Index("ix_deliveries_recipient_state", "recipient", "state"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("documents.message_id"), index=True)
    recipient: Mapped[str] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(120), default="local")  # local | link:<name> | paper
    state: Mapped[str] = mapped_column(String(20), default="accepted", index=True)
    code: Mapped[str] = mapped_column(String(40), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    person: Mapped[str] = mapped_column(String(120), default="")
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    routed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    signed_for_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    returned_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reminders: Mapped[int] = mapped_column(Integer, default=0)


class Receipt(Base):
    """A recipient's signed receipt, kept as received (non-repudiation)."""

    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("message_id", "recipient", "event"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    recipient: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    der: Mapped[bytes] = mapped_column(LargeBinary)


class EvidenceRecord(Base):
    """Delivery evidence this hub issued (accepted, rejected, relayed, paper route, expired,
    recalled: signed, timestamped notices naming the envelope digest) or received from a
    neighbouring hub, kept as sent or received. Receipts are kept in `receipts`."""

    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(128), index=True)
    event: Mapped[str] = mapped_column(String(30))
    issuer: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Outbox(Base):
    """Messages the hub owes the broker (transactional outbox): written in the same
    transaction as the state they report, published with confirms, then marked."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # document | receipt | notice | directory
    exchange: Mapped[str] = mapped_column(String(60))
    routing_key: Mapped[str] = mapped_column(String(220))
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # None: the envelope
    recipient: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)


class Rejection(Base):
    """A refused input: code, message, and where its bytes were kept for inspection."""

    __tablename__ = "rejections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(128), default="", index=True)
    sender: Mapped[str] = mapped_column(String(200), default="")
    code: Mapped[str] = mapped_column(String(40), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    kept_at: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class AuditEntry(Base):
    """Append-only, hash-chained audit log: each entry's hash covers the previous one."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60), index=True)
    subject: Mapped[str] = mapped_column(String(200), default="", index=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Setting(Base):
    """Small key/value state: directory version, chain head, link states."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


class Link(Base):
    """A link to another exchange: `parent` (the city) or a child prefix."""

    __tablename__ = "links"
    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(200), default="")  # "" for the parent
    role: Mapped[str] = mapped_column(String(10))  # parent | child
    state: Mapped[str] = mapped_column(String(20), default="active")  # active | paused | draining
    broker_user: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RemoteDirectory(Base):
    """The newest signed directory snapshot of another hub's prefix, received over a link
    (kept as signed, so agents and other links get the owner's own signature)."""

    __tablename__ = "remote_directories"
    prefix: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    link: Mapped[str] = mapped_column(String(120))  # the link it arrived over
    units: Mapped[int] = mapped_column(Integer, default=0)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
