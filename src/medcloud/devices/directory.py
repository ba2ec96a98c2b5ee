"""The devices context's published interface for other contexts (`DeviceDirectory`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.devices import repository
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
            if device is None:
                return None
            since = await repository.last_assignment_change(session, device_id)
        return DeviceRef(
            device.id,
            device.organisation_id,
            device.patient_id,
            patient_since=since,
            decommissioned=device.status == "decommissioned",
        )

    async def patients_at(self, device_id: str, times: Sequence[dt.datetime]) -> list[str | None]:
        """Return the patient the device was assigned to at each of `times` (None: nobody)."""
        async with self._sessions() as session:
            history = await repository.assignments(session, device_id)
        # An assignment holds from its start (inclusive) to its end (exclusive); they never
        # overlap, since assigning ends the previous one at the same instant.
        return [
            next(
                (
                    a.patient_id
                    for a in history
                    if a.started_at <= at and (a.ended_at is None or at < a.ended_at)
                ),
                None,
            )
            for at in times
        ]

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
            found.device_id,
            found.organisation_id,
            found.patient_id,
            expires_at=found.expires_at,
            patient_since=found.patient_since,
        )
