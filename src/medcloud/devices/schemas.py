"""Wire models of the devices context."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from medcloud.devices.firmware import VERSION_PATTERN
from medcloud.platform.types import INTEGER, Id, Name, StrictNumber, Timestamp
from medcloud.platform.types import Text as Line

Text = Name
Version = Annotated[str, Field(max_length=50, pattern=VERSION_PATTERN)]
DeviceStatus = Literal["unknown", "online", "offline", "decommissioned"]
Percentage = Annotated[StrictNumber, Field(gt=0, le=100)]


class DeviceCreate(BaseModel):
    """What an admin sends to register a device: a model profile, or a model and manufacturer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["model_id"], "properties": {"model_id": {"type": "string"}}},
                {
                    "required": ["model", "manufacturer"],
                    "properties": {
                        "model": {"type": "string"},
                        "manufacturer": {"type": "string"},
                    },
                },
            ]
        },
    )

    serial_number: Text
    model: Text | None = None
    manufacturer: Text | None = None
    patient_id: Id | None = None
    model_id: Id | None = None
    udi: Line | None = None
    hardware_revision: Text | None = None
    firmware_version: Version | None = None
    ward_id: Id | None = None
    location: Text | None = None

    @model_validator(mode="after")
    def _names_a_model(self) -> DeviceCreate:
        if self.model_id is None and (self.model is None or self.manufacturer is None):
            raise ValueError("give model_id, or model and manufacturer")
        return self


class DeviceUpdate(BaseModel):
    """What a technician may change about a device; only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    udi: Line | None = None
    hardware_revision: Text | None = None
    ward_id: Id | None = None
    location: Text | None = None
    model_id: Id | None = None
    decommissioned: Literal[True] | None = None
    """Take the device out of service for good: assignment ended, tokens revoked, history kept."""


class AssignmentSet(BaseModel):
    """Attach the device to a patient from now on, or detach it (`patient_id` null)."""

    model_config = ConfigDict(extra="forbid")

    patient_id: Id | None


class AssignmentRead(BaseModel):
    """One period during which a device was attached to a patient."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    patient_id: str
    started_at: dt.datetime
    ended_at: dt.datetime | None


class AssignmentList(BaseModel):
    """A device's assignments, newest first."""

    items: list[AssignmentRead]


class HeartbeatIn(BaseModel):
    """A device's periodic sign of life."""

    model_config = ConfigDict(extra="forbid")

    battery_percent: Annotated[StrictNumber, Field(ge=0, le=100)] | None = None
    signal_strength_dbm: Annotated[StrictNumber, Field(ge=-150, le=0)] | None = None
    firmware_version: Version | None = None
    uptime_seconds: Annotated[int, Field(ge=0, le=2**53), INTEGER] | None = None


class DeviceStatusRead(BaseModel):
    """A device's liveness as the server sees it."""

    device_id: str
    status: DeviceStatus
    last_seen_at: dt.datetime | None
    firmware_version: str | None


class DeviceRead(BaseModel):
    """A device as users see it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    serial_number: str
    model: str
    manufacturer: str
    patient_id: str | None
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    model_id: str | None = None
    udi: str | None = None
    hardware_revision: str | None = None
    firmware_version: str | None = None
    ward_id: str | None = None
    location: str | None = None
    status: DeviceStatus = "unknown"
    status_changed_at: dt.datetime | None = None
    battery_percent: float | None = None
    signal_strength_dbm: float | None = None
    uptime_seconds: int | None = None
    last_heartbeat_at: dt.datetime | None = None
    decommissioned_at: dt.datetime | None = None


class DeviceRegistered(DeviceRead):
    """A newly registered device, with the token it authenticates with (shown only this once)."""

    token: str


class DevicePage(BaseModel):
    """One page of devices, newest first."""

    items: list[DeviceRead]
    next_cursor: str | None


MAX_GRACE_SECONDS = 7 * 24 * 3600


class CredentialRotate(BaseModel):
    """How a rotation treats the tokens it replaces."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: Annotated[int, Field(ge=0, le=MAX_GRACE_SECONDS), INTEGER] = 3600
    """How long the previous tokens keep working; 0 stops them at once."""


class CredentialRead(BaseModel):
    """A device credential as users see it: when it was issued, used and stops working."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class CredentialIssued(CredentialRead):
    """A new credential, with its token (shown only this once)."""

    token: str
    previous_valid_until: dt.datetime
    """When the tokens this one replaces stop working."""


class CredentialList(BaseModel):
    """A device's credentials, newest first."""

    items: list[CredentialRead]


class DeviceModelCreate(BaseModel):
    """A device model (profile) and the key its manufacturer signs firmware with."""

    model_config = ConfigDict(extra="forbid")

    manufacturer: Text
    model: Text
    measurement_types: list[
        Annotated[str, Field(max_length=40, pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    ] = Field(default_factory=list, max_length=50)
    reporting_interval_seconds: Annotated[StrictNumber, Field(gt=0, le=86_400)] = 60.0
    signing_public_key: str = Field(min_length=1, max_length=2000)
    """PEM (SubjectPublicKeyInfo) Ed25519 public key."""


class DeviceModelRead(BaseModel):
    """A device model as users see it."""

    id: str
    manufacturer: str
    model: str
    measurement_types: list[str]
    reporting_interval_seconds: float
    signing_public_key: str
    created_at: dt.datetime


class DeviceModelList(BaseModel):
    """The organisation's device models."""

    items: list[DeviceModelRead]


class DeviceAlertRead(BaseModel):
    """A technical alert about a device."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    device_id: str
    patient_id: str | None
    kind: str
    severity: str
    message: str
    raised_at: dt.datetime
    resolved_at: dt.datetime | None


class DeviceAlertPage(BaseModel):
    """Technical alerts, newest first."""

    items: list[DeviceAlertRead]
    next_cursor: str | None


class FirmwareManifest(BaseModel):
    """The terms an image was signed with."""

    model_config = ConfigDict(extra="forbid")

    model: Text
    version: Version
    min_version: Version | None = None
    """The oldest version that may install this image (None: any older one)."""
    expires_at: Timestamp


class FirmwareCreate(BaseModel):
    """Announce an image: its file name, signed manifest and signature; the bytes follow."""

    model_config = ConfigDict(extra="forbid")

    file_name: str = Field(min_length=1, max_length=200)
    manifest: FirmwareManifest
    signature: str | None = Field(default=None, max_length=200)
    """Base64 Ed25519 signature of `signed_message(sha256, manifest)` (see devices/firmware.py)."""


class FirmwareRead(BaseModel):
    """A firmware image: `pending` until its bytes are uploaded and verified."""

    id: str
    model_id: str
    file_name: str
    version: str
    min_version: str | None
    expires_at: dt.datetime
    manifest: dict[str, Any]
    signature: str
    sha256: str | None
    size_bytes: int | None
    status: Literal["pending", "verified"]
    created_at: dt.datetime
    verified_at: dt.datetime | None


class FirmwareList(BaseModel):
    """A model's firmware images, newest first."""

    items: list[FirmwareRead]


class CampaignCreate(BaseModel):
    """A staged rollout of a verified image to the model's devices."""

    model_config = ConfigDict(extra="forbid")

    name: Text
    image_id: Id
    from_versions: list[Version] | None = Field(default=None, max_length=100)
    """Only devices currently on one of these versions (None: any older version)."""
    ward_id: Id | None = None
    """Only devices located in this ward."""
    waves: list[Percentage] = Field(
        default_factory=lambda: [1.0, 10.0, 50.0, 100.0], min_length=1, max_length=20
    )
    """Cumulative percentages of the targets each wave reaches; the last is 100."""
    success_threshold: Annotated[StrictNumber, Field(gt=0, le=1)] = 0.9
    """Share of a wave's devices that must succeed before the next wave starts."""
    error_threshold: Annotated[StrictNumber, Field(ge=0, lt=1)] = 0.1
    """Share of failed updates above which the campaign pauses itself."""
    override_maintenance_window: StrictBool = False
    """Update devices assigned to a patient at any time, not only in the maintenance window."""

    @field_validator("waves")
    @classmethod
    def _waves_rise_to_100(cls, waves: list[float]) -> list[float]:
        if not waves or waves[-1] != 100:
            raise ValueError("the last wave must reach 100%")
        if any(not 0 < w <= 100 for w in waves) or any(
            a >= b for a, b in zip(waves, waves[1:], strict=False)
        ):
            raise ValueError("waves are rising percentages between 0 and 100")
        return waves


class CampaignRead(BaseModel):
    """A rollout campaign and how its devices are doing."""

    id: str
    name: str
    model_id: str
    image_id: str
    version: str
    waves: list[float]
    wave_sizes: list[int]
    """Targets released by each wave, cumulatively."""
    current_wave: int
    """Index of the latest released wave."""
    filters: dict[str, Any]
    success_threshold: float
    error_threshold: float
    override_maintenance_window: bool
    status: Literal["running", "paused", "cancelled", "completed"]
    status_reason: str | None
    targets: dict[str, int]
    """Devices by update status."""
    created_at: dt.datetime
    updated_at: dt.datetime


class CampaignList(BaseModel):
    """Rollout campaigns, newest first."""

    items: list[CampaignRead]


class UpdateOffer(BaseModel):
    """What a device should install: fetch, check the digest and signature, install, report."""

    campaign_id: str
    image_id: str
    version: str
    download_url: str
    sha256: str
    size_bytes: int
    signature: str
    manifest: dict[str, Any]


class ProgressReport(BaseModel):
    """A device's news about the update it was offered."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["downloading", "installing", "succeeded", "failed"]
    reason: str | None = Field(default=None, max_length=200)
    campaign_id: Id | None = None


class ProgressRead(BaseModel):
    """Where the device's update stands after its report."""

    campaign_id: str
    status: str
    reason: str | None
