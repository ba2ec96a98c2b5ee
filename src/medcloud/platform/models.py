"""Tables of the shared kernel: the outbox, consumers' processed events, and dead letters."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime

# SQLite makes only INTEGER PRIMARY KEY an auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMessage(Base):
    """An event written in the same transaction as the state change it reports."""

    __tablename__ = "outbox_message"

    position: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    routing_key: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(
            "ix_outbox_message_pending",
            "position",
            postgresql_where=published_at.is_(None),
            sqlite_where=published_at.is_(None),
        ),
    )


class ProcessedEvent(Base):
    """An event a consumer has already applied, so that a redelivery changes nothing."""

    __tablename__ = "processed_event"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    processed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DeadLetter(Base):
    """An event a consumer gave up on, with the reason, kept for operators to inspect."""

    __tablename__ = "dead_letter"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(36))
    routing_key: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    failed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
