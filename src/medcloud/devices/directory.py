"""The devices context's published interface for other contexts (`DeviceDirectory`)."""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.devices import repository
from medcloud.devices.models import Device
from medcloud.platform.clock import Clock, SystemClock
from medcloud.platform.directory import DeviceRef

log = structlog.get_logger(__name__)

# A credential's last use is recorded at most this often, so authenticating stays a read.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


class SqlDeviceDirectory:
    """Look devices up in the registry."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock = SystemClock()
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def get(self, device_id: str) -> DeviceRef | None:
        """Return the device, or None."""
        async with self._sessions() as session:
            device = await repository.get(session, device_id)
        return None if device is None else _ref(device)

    async def by_token_hash(self, token_hash: str) -> DeviceRef | None:
        """Return the device holding this token while it is neither revoked nor expired."""
        now = self._clock.now()
        async with self._sessions() as session:
            found = await repository.find_working_credential(session, token_hash, now)
            if found is None:
                return None
            since = now - LAST_USED_RESOLUTION
            if found.last_used_at is None or found.last_used_at < since:
                # The read transaction ends first: on SQLite a transaction that read before it
                # writes cannot wait for the write lock, one that starts with the write can.
                await session.rollback()
                try:
                    await repository.mark_credential_used(
                        session, found.credential_id, now, unless_since=since
                    )
                    await session.commit()
                except SQLAlchemyError as exc:
                    # Bookkeeping only: a busy database must not turn a valid device away.
                    await session.rollback()
                    log.warning("device.last_used.failed", error=type(exc).__name__)
        return DeviceRef(
            found.device_id, found.organisation_id, found.patient_id, expires_at=found.expires_at
        )


def _ref(device: Device) -> DeviceRef:
    return DeviceRef(device.id, device.organisation_id, device.patient_id)
