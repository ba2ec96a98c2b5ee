"""Series ids: the 4-byte name each stored reading gives its device, type and patient.

A process remembers every series it has seen. A reading of a new one (a new device, type or
patient) has its series made before the write, in a short transaction of its own like a new
month's partition, so the writer's transaction only ever refers to series that exist; a
series made for a write that then fails is harmless and reused by the retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from medcloud.ingest import repository
from medcloud.ingest.repository import SeriesKey
from medcloud.platform.uow import UnitOfWorkFactory


class SeriesIds:
    """Name a device's series, making those a process has not seen."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory
        self._known: dict[SeriesKey, int] = {}
        self._wanted: set[SeriesKey] = set()
        self._making = asyncio.Lock()

    async def of_device(
        self, organisation_id: str, device_id: str, needed: Iterable[tuple[str, str | None]]
    ) -> dict[tuple[str, str | None], int]:
        """Return the id of each (type, patient) series of the device named in `needed`."""
        keys = {
            (code, patient_id): (device_id, code, patient_id or "", organisation_id)
            for code, patient_id in needed
        }
        known = self._known
        missing = {key for key in keys.values() if key not in known}
        if missing:
            await self._make(missing)
        return {wanted: known[key] for wanted, key in keys.items()}

    async def _make(self, missing: set[SeriesKey]) -> None:
        # One maker at a time, and each makes what every waiter wants: when a fleet comes
        # online, a thousand devices' first requests make their series in a few transactions
        # instead of queueing for a thousand one after another. A waiter whose keys an earlier
        # round made finds nothing left; one whose round failed makes its own again.
        self._wanted |= missing
        async with self._making:
            wanted = (self._wanted | missing) - self._known.keys()
            self._wanted.clear()
            if wanted:
                async with self._uow_factory() as uow:
                    made = await repository.make_series(uow.session, sorted(wanted))
                    await uow.commit()
                self._known.update(made)
