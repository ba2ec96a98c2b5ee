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
