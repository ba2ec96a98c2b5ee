"""Wire models of the devices context."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]


class DeviceCreate(BaseModel):
    """What an admin sends to register a device."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    serial_number: Text
    model: Text
    manufacturer: Text
    patient_id: str | None = Field(default=None, min_length=1, max_length=64)


class DeviceRead(BaseModel):
    """A device as users see it."""

    id: str
    serial_number: str
    model: str
    manufacturer: str
    patient_id: str | None
    created_at: dt.datetime
    last_seen_at: dt.datetime | None


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

    grace_seconds: int = Field(default=3600, ge=0, le=MAX_GRACE_SECONDS)
    """How long the previous tokens keep working; 0 stops them at once."""


class CredentialRead(BaseModel):
    """A device credential as users see it: when it was issued, used and stops working."""

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
