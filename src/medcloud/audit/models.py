"""Tables owned by the audit context: the chained entries, their checkpoints and the signed head.

Free-form fields are unbounded text: an entry too long for a column would be refused and lost to
the dead-letter queue, which an audit log must not allow.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime
from medcloud.platform.models import BigId


class AuditEntry(Base):
    """One audited fact at its place in the global hash chain; never updated or deleted."""

    __tablename__ = "audit_entry"

    position: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    organisation_id: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    object_type: Mapped[str | None] = mapped_column(Text)
    object_id: Mapped[str | None] = mapped_column(Text)
    patient_id: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    source_ip: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index(
            "ix_audit_entry_organisation_id_occurred_at",
            "organisation_id",
            "occurred_at",
            "position",
        ),
        Index("ix_audit_entry_organisation_id_patient_id", "organisation_id", "patient_id"),
        Index("ix_audit_entry_organisation_id_actor_id", "organisation_id", "actor_id"),
    )


class AuditCheckpoint(Base):
    """A signature over (position, hash), written every `checkpoint_every` entries."""

    __tablename__ = "audit_checkpoint"

    position: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class AuditHead(Base):
    """The single row naming, under signature, the last entry of the chain.

    A row of its own rather than a checkpoint rewritten on every append: checkpoints stay
    append-only like the entries, and the head signs a different message, so no checkpoint's
    signature can stand in for it. Removing entries from the tail leaves the head pointing past
    the end; moving the head back needs a new signature.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigId)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)
