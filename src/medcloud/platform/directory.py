"""Published interface through which contexts look up devices without reading the devices context's
tables themselves. The devices context implements it; the composition root hands it out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DeviceRef:
    """What other contexts may know of a device."""

    id: str
    organisation_id: str
    patient_id: str | None
    expires_at: dt.datetime | None = None
    """When the token the device was found by stops working (None: not scheduled to)."""
    patient_since: dt.datetime | None = None
    """Since when `patient_id` (or no patient) has held: the device's last assignment change;
    None when it was never assigned. Readings taken earlier belong to whoever was assigned then."""
    decommissioned: bool = False
    """The device was taken out of service: data it still sends is not accepted."""


class DeviceDirectory(Protocol):
    """Find devices by id or by the hash of their token."""

    async def get(self, device_id: str) -> DeviceRef | None:
        """Return the device, or None."""
        ...

    async def by_token_hash(self, token_hash: str) -> DeviceRef | None:
        """Return the device holding this token, or None."""
        ...

    async def patients_at(self, device_id: str, times: Sequence[dt.datetime]) -> list[str | None]:
        """Return the patient the device was assigned to at each of `times` (None: nobody)."""
        ...

    async def close(self) -> None:
        """Write what the look-ups noted (a credential's last use) before the process stops."""
        ...


@dataclass(frozen=True)
class PatientRef:
    """What other contexts may know of a patient: whose, and in which ward (care team)."""

    id: str
    organisation_id: str
    ward_id: str | None


class PatientDirectory(Protocol):
    """Find patients by id. The identity context implements it."""

    async def get(self, patient_id: str) -> PatientRef | None:
        """Return the patient, or None."""
        ...

    async def wards(self, patient_ids: Sequence[str]) -> dict[str, str | None]:
        """Return the ward of each known patient (None: in no ward), in one look-up."""
        ...

    async def has_ward(self, organisation_id: str, ward_id: str) -> bool:
        """Tell whether the organisation has this ward."""
        ...


@dataclass(frozen=True)
class CareScope:
    """Which patients' clinical data a user may see: the whole organisation's, or a set."""

    whole_organisation: bool
    patient_ids: frozenset[str]

    def allows(self, patient_id: str | None) -> bool:
        """Tell whether this scope covers `patient_id` (data of no patient: organisation-wide)."""
        if self.whole_organisation:
            return True
        return patient_id is not None and patient_id in self.patient_ids


class CareDirectory(Protocol):
    """Decide whose data a user may see: their care teams' patients and break-glass grants."""

    async def scope(self, user_id: str, organisation_id: str, role: str) -> CareScope:
        """Return the user's current care scope."""
        ...

    async def is_member(self, user_id: str, organisation_id: str) -> bool:
        """Tell whether the user is an active user of the organisation."""
        ...

    async def ward_members(self, organisation_id: str, ward_id: str) -> list[str]:
        """Return the ids of the active users in the ward's care team (who to tell)."""
        ...


class ReadingHistory(Protocol):
    """Read a patient's stored readings back. The ingest context implements it; analytics asks
    it off the live path (forecasts, the anomaly model's training and scoring)."""

    async def series(
        self, patient_id: str, measurement: str, start: dt.datetime, end: dt.datetime
    ) -> list[tuple[dt.datetime, float]]:
        """Return the patient's readings of one type in [start, end), oldest first."""
        ...

    async def patients(
        self, organisation_id: str | None, start: dt.datetime, end: dt.datetime
    ) -> list[str]:
        """Return the patients with readings in [start, end) (None: of every organisation)."""
        ...
