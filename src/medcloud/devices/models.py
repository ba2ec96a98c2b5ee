"""Tables owned by the devices context."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime


class Device(Base):
    """A registered medical device."""

    __tablename__ = "device"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    serial_number: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    manufacturer: Mapped[str] = mapped_column(String(100))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("organisation_id", "serial_number"),
        Index("ix_device_organisation_id_created_at", "organisation_id", "created_at"),
        Index("ix_device_last_seen_at", "last_seen_at"),
    )


class DeviceCredential(Base):
    """One token a device authenticates with, stored as its hash.

    A device holds several while a rotation's grace period runs: the new one and the old ones,
    which stop working at `expires_at`. A revoked credential stops working at once.
    """

    __tablename__ = "device_credential"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_device_credential_device_id_created_at", "device_id", "created_at"),
    )

    def works_at(self, moment: dt.datetime) -> bool:
        """Tell whether the token authenticates at `moment`."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > moment)

    def expire_by(self, deadline: dt.datetime) -> bool:
        """Stop working by `deadline` at the latest; tell whether anything changed.

        Never lengthens a credential's life, and leaves a revoked one revoked.
        """
        if self.revoked_at is not None or (
            self.expires_at is not None and self.expires_at <= deadline
        ):
            return False
        self.expires_at = deadline
        return True

    def revoke(self, at: dt.datetime) -> bool:
        """Stop working from `at`; tell whether it was not revoked already."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = at
        return True
