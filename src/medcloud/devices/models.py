"""Tables owned by the devices context."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
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
    model_id: Mapped[str | None] = mapped_column(String(36))
    """The device's model profile, if one is registered (no database-level key: see 0003)."""
    udi: Mapped[str | None] = mapped_column(String(200))
    hardware_revision: Mapped[str | None] = mapped_column(String(50))
    firmware_version: Mapped[str | None] = mapped_column(String(50))
    ward_id: Mapped[str | None] = mapped_column(String(36))
    location: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="unknown")
    """unknown (never heard from), online, offline or decommissioned."""
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    battery_percent: Mapped[float | None] = mapped_column(Float)
    signal_strength_dbm: Mapped[float | None] = mapped_column(Float)
    uptime_seconds: Mapped[int | None] = mapped_column(Integer)
    last_heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    decommissioned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("organisation_id", "serial_number"),
        Index("ix_device_organisation_id_status", "organisation_id", "status"),
        Index("ix_device_model_id", "model_id"),
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


class DeviceModel(Base):
    """A device model (profile): what it measures, how often it reports, who signs its firmware."""

    __tablename__ = "device_model"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    manufacturer: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    measurement_types: Mapped[str] = mapped_column(Text)
    """JSON list of the measurement types the model reports."""
    reporting_interval_seconds: Mapped[float] = mapped_column(Float)
    signing_public_key: Mapped[str] = mapped_column(Text)
    """PEM Ed25519 public key of the manufacturer's firmware signing key."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("organisation_id", "manufacturer", "model"),)


class DeviceAssignment(Base):
    """A device attached to a patient from `started_at` until `ended_at` (None: still)."""

    __tablename__ = "device_assignment"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_device_assignment_device_id_started_at", "device_id", "started_at"),
        Index("ix_device_assignment_patient_id", "patient_id"),
    )


class DeviceAlert(Base):
    """A technical alert about a device (offline while assigned, low battery)."""

    __tablename__ = "device_alert"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(30))
    severity: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(String(200))
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_device_alert_organisation_id_raised_at", "organisation_id", "raised_at"),
        Index("ix_device_alert_device_id_kind", "device_id", "kind"),
    )


class FirmwareImage(Base):
    """A firmware image of a model: its signed manifest, digest and where its bytes are kept.

    Created `pending` with its manifest and signature; becomes `verified` once uploaded bytes
    match the signature.
    """

    __tablename__ = "firmware_image"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    model_id: Mapped[str] = mapped_column(ForeignKey("device_model.id"))
    file_name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(50))
    min_version: Mapped[str | None] = mapped_column(String(50))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    manifest: Mapped[str] = mapped_column(Text)
    """The manifest as signed (canonical JSON without the digest)."""
    signature: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    storage_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        Index("ix_firmware_image_organisation_id_created_at", "organisation_id", "created_at"),
    )


class RolloutCampaign(Base):
    """A staged rollout of one firmware image to a model's devices, wave by wave."""

    __tablename__ = "rollout_campaign"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[str] = mapped_column(ForeignKey("device_model.id"))
    image_id: Mapped[str] = mapped_column(ForeignKey("firmware_image.id"))
    waves: Mapped[str] = mapped_column(Text)
    """JSON list of cumulative percentages, e.g. [1, 10, 50, 100]."""
    filters: Mapped[str] = mapped_column(Text)
    """JSON of the target filters the campaign was created with."""
    success_threshold: Mapped[float] = mapped_column(Float)
    error_threshold: Mapped[float] = mapped_column(Float)
    override_maintenance_window: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20))
    """running, paused, cancelled or completed."""
    status_reason: Mapped[str | None] = mapped_column(String(200))
    current_wave: Mapped[int] = mapped_column(Integer)
    failures_accepted: Mapped[int] = mapped_column(Integer, default=0)
    """Failures an operator accepted by resuming; the error threshold counts those after."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_rollout_campaign_organisation_id_created_at", "organisation_id", "created_at"),
        Index("ix_rollout_campaign_status", "status"),
    )


class RolloutTarget(Base):
    """One device in a campaign: its wave and how its update went."""

    __tablename__ = "rollout_target"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("rollout_campaign.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    wave: Mapped[int] = mapped_column(Integer)
    from_version: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    """pending, offered, downloading, installing, succeeded, failed, rolled_back, timed_out,
    skipped or cancelled."""
    reason: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("campaign_id", "device_id"),
        Index("ix_rollout_target_device_id_status", "device_id", "status"),
        Index("ix_rollout_target_campaign_id_wave_status", "campaign_id", "wave", "status"),
    )
