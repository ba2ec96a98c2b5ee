"""The devices context's published interface for other contexts (`DeviceDirectory`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.devices import repository
from medcloud.devices.models import Device
from medcloud.platform.directory import DeviceRef


class SqlDeviceDirectory:
    """Look devices up in the registry."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, device_id: str) -> DeviceRef | None:
        """Return the device, or None."""
        async with self._sessions() as session:
            return _ref(await repository.get(session, device_id))

    async def by_token_hash(self, token_hash: str) -> DeviceRef | None:
        """Return the device holding this token, or None."""
        async with self._sessions() as session:
            return _ref(await repository.get_by_token_hash(session, token_hash))


def _ref(device: Device | None) -> DeviceRef | None:
    if device is None:
        return None
    return DeviceRef(device.id, device.organisation_id, device.patient_id)
