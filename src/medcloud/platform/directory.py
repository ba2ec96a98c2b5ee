"""Published interface through which contexts look up devices without reading the devices context's
tables themselves. The devices context implements it; the composition root hands it out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DeviceRef:
    """What other contexts may know of a device."""

    id: str
    organisation_id: str
    patient_id: str | None


class DeviceDirectory(Protocol):
    """Find devices by id or by the hash of their token."""

    async def get(self, device_id: str) -> DeviceRef | None:
        """Return the device, or None."""
        ...

    async def by_token_hash(self, token_hash: str) -> DeviceRef | None:
        """Return the device holding this token, or None."""
        ...
