"""The devices context's published interface for other contexts (`DeviceDirectory`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Sequence

import orjson
import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.devices import repository, rollout_repository
from medcloud.devices.models import Device
from medcloud.platform.clock import Clock, SystemClock
from medcloud.platform.directory import CampaignCard, DeviceCard, DeviceQuery, DeviceRef

log = structlog.get_logger(__name__)

# A credential's last use is recorded at most this often, so authenticating stays a read.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
# Uses are written together, this long after the first one noted: bookkeeping, off the path
# of the request that authenticated.
RECORD_USES_AFTER_SECONDS = 1.0


class SqlDeviceDirectory:
    """Look devices up in the registry.

    Authenticating a device only reads. That a credential was used is noted in memory and
    written a moment later, for every credential used meanwhile, in one write transaction of
    its own: a write on the request path would make each device's first request of the minute
    queue for SQLite's single writer, and on the read connections it would wait holding one
    that a writer may be waiting for.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock = SystemClock(),
        *,
        write_sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self._sessions = sessions
        self._write_sessions = write_sessions
        self._clock = clock
        self._uses: dict[str, dt.datetime] = {}
        self._recorder: asyncio.Task[None] | None = None

    async def get(self, device_id: str) -> DeviceRef | None:
        """Return the device, or None."""
        async with self._sessions() as session:
            found = await repository.reference(session, device_id)
        if found is None:
            return None
        found_id, organisation_id, patient_id, status, since = found
        return DeviceRef(
            found_id,
            organisation_id,
            patient_id,
            patient_since=since,
            decommissioned=status == "decommissioned",
        )

    async def card(self, device_id: str) -> DeviceCard | None:
        """Return what may be shown of the device, or None."""
        async with self._sessions() as session:
            device = await repository.get(session, device_id)
        return None if device is None else _card(device)

    async def search(
        self,
        organisation_id: str,
        query: DeviceQuery,
        *,
        limit: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[DeviceCard]:
        """Return up to `limit` of the organisation's devices matching `query`, newest first,
        after a (created_at, id) position."""
        async with self._sessions() as session:
            found = await repository.search(
                session, organisation_id, query, limit=limit, after=after
            )
        return [_card(device) for device in found]

    async def campaigns(
        self, organisation_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[CampaignCard]:
        """Return the organisation's campaigns that ran in [start, end), oldest first."""
        async with self._sessions() as session:
            found = await rollout_repository.campaigns_between(session, organisation_id, start, end)
            return [
                CampaignCard(
                    id=campaign.id,
                    name=campaign.name,
                    status=campaign.status,
                    current_wave=campaign.current_wave,
                    waves=len(orjson.loads(campaign.waves)),
                    targets=await rollout_repository.target_counts(session, campaign.id),
                )
                for campaign in found
            ]

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
        if found.last_used_at is None or found.last_used_at < now - LAST_USED_RESOLUTION:
            # The first use of the window is the one recorded, however many follow before it is.
            self._uses.setdefault(found.credential_id, now)
            if self._recorder is None or self._recorder.done():
                self._recorder = asyncio.create_task(
                    self._record_later(), name="device-credential-uses"
                )
        return DeviceRef(
            found.device_id,
            found.organisation_id,
            found.patient_id,
            expires_at=found.expires_at,
            patient_since=found.patient_since,
        )

    async def _record_later(self) -> None:
        await asyncio.sleep(RECORD_USES_AFTER_SECONDS)
        await self.record_uses()

    async def record_uses(self) -> int:
        """Write the credential uses noted so far, in one transaction; return how many.

        Uses that could not be written (a busy database) are kept for the next time.
        """
        uses, self._uses = self._uses, {}
        if not uses:
            return 0
        try:
            async with self._write_sessions() as session, session.begin():
                await repository.mark_credentials_used(
                    session, uses, resolution=LAST_USED_RESOLUTION
                )
        except SQLAlchemyError as exc:
            # Bookkeeping only: it must never turn a valid device away.
            for credential_id, used_at in uses.items():
                self._uses.setdefault(credential_id, used_at)
            log.warning("device.last_used.failed", error=type(exc).__name__, pending=len(uses))
            return 0
        return len(uses)

    async def close(self) -> None:
        """Write what is still noted, and stop the pending write (before the database closes)."""
        if self._recorder is not None and not self._recorder.done():
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder
        await self.record_uses()


def _card(device: Device) -> DeviceCard:
    return DeviceCard(
        id=device.id,
        organisation_id=device.organisation_id,
        patient_id=device.patient_id,
        serial_number=device.serial_number,
        manufacturer=device.manufacturer,
        model=device.model,
        udi=device.udi,
        firmware_version=device.firmware_version,
        status=device.status,
        created_at=device.created_at,
    )
