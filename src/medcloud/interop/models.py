"""Tables owned by the interoperability context."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime


class Interface(Base):
    """A hospital system allowed to send HL7 v2 (a monitor gateway, an ADT feed), and what its
    messages may do.

    A connection belongs to the interface whose sending application and facility (MSH-3,
    MSH-4) its first message names; an interface that leaves one empty accepts any.
    """

    __tablename__ = "hl7_interface"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(100))
    sending_application: Mapped[str | None] = mapped_column(String(180))
    sending_facility: Mapped[str | None] = mapped_column(String(180))
    allowed_addresses: Mapped[list[str]] = mapped_column(JSON)
    """Addresses or networks (CIDR) it may connect from; empty: any."""
    identifier_system: Mapped[str] = mapped_column(String(200))
    """The system its patient identifiers (PID-3) belong to, as patients are registered."""
    register_patients: Mapped[bool] = mapped_column(Boolean)
    """Whether an observation of a patient medcloud does not know registers them from PID."""
    time_zone: Mapped[str] = mapped_column(String(64))
    """The zone of its timestamps that carry no offset."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ProcessedMessage(Base):
    """A message answered, by its control id (MSH-10): a repeat is answered the same again
    without being processed twice."""

    __tablename__ = "hl7_message"

    interface_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    control_id: Mapped[str] = mapped_column(String(199), primary_key=True)
    message_type: Mapped[str] = mapped_column(String(20))
    ack_code: Mapped[str] = mapped_column(String(2))
    ack: Mapped[str] = mapped_column(Text)
    """The acknowledgement sent, sent again for a repeat."""
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
