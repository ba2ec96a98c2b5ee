"""Published interface through which contexts look up devices without reading the devices context's
tables themselves. The devices context implements it; the composition root hands it out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True)
class CampaignCard:
    """A firmware rollout campaign as others see it: how far it went, and how its devices
    fared."""

    id: str
    name: str
    status: str
    """running, paused, cancelled or completed."""
    current_wave: int
    """The wave reached, counted from 0."""
    waves: int
    targets: dict[str, int]
    """Devices by the state of their update (succeeded, failed, pending, …)."""


@dataclass(frozen=True)
class DeviceCard:
    """What another context may show of a device (the FHIR API's Device)."""

    id: str
    organisation_id: str
    patient_id: str | None
    serial_number: str
    manufacturer: str
    model: str
    udi: str | None
    firmware_version: str | None
    status: str
    """Connectivity ("online", "offline", "unknown") or "decommissioned"."""
    created_at: dt.datetime

    @property
    def decommissioned(self) -> bool:
        """Whether the device was taken out of service."""
        return self.status == "decommissioned"


@dataclass(frozen=True)
class DeviceQuery:
    """What a device search narrows to; None means any, and every condition given must hold."""

    ids: frozenset[str] | None = None
    patient_id: str | None = None
    serial_number: str | None = None
    patients: frozenset[str] | None = None
    """Only devices assigned to one of these patients (a clinician's care scope)."""


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

    async def card(self, device_id: str) -> DeviceCard | None:
        """Return what may be shown of the device, or None."""
        ...

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
        ...

    async def campaigns(
        self, organisation_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[CampaignCard]:
        """Return the organisation's rollout campaigns that ran in [start, end): created before
        its end and not finished before its start, oldest first."""
        ...


@dataclass(frozen=True)
class PatientRef:
    """What other contexts may know of a patient: whose, and in which ward (care team)."""

    id: str
    organisation_id: str
    ward_id: str | None


@dataclass(frozen=True)
class PatientCard:
    """What another context may show of a patient: who they are (the FHIR API's Patient)."""

    id: str
    organisation_id: str
    ward_id: str | None
    identifier_system: str
    identifier_value: str
    family_name: str
    given_name: str
    birth_date: dt.date | None
    created_at: dt.datetime


@dataclass(frozen=True)
class PatientQuery:
    """What a patient search narrows to; None means any, and every condition given must hold."""

    ids: frozenset[str] | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    name: str | None = None
    """The start of the family or the given name, in any case."""
    ward_id: str | None = None
    patients: frozenset[str] | None = None
    """Only these patients (a clinician's care scope)."""


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

    async def cards(self, patient_ids: Sequence[str]) -> list[PatientCard]:
        """Return what may be shown of each known patient, in one look-up."""
        ...

    async def search(
        self,
        organisation_id: str,
        query: PatientQuery,
        *,
        limit: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[PatientCard]:
        """Return up to `limit` of the organisation's patients matching `query`, newest first,
        after a (created_at, id) position."""
        ...


@dataclass(frozen=True)
class PatientDetails:
    """What another system says of a patient (an HL7 PID and PV1), to find, register or update
    the patient by."""

    identifier_system: str
    identifier_value: str
    family_name: str | None = None
    given_name: str | None = None
    birth_date: dt.date | None = None
    ward: str | None = None
    """The ward's name as the sender knows it (PV1-3.1); matched to one of the organisation's."""


class PatientRegistry(Protocol):
    """Find patients by the identifier another system knows them by, and register or update
    them on its word (audited as the interface that said it). The identity context implements
    it."""

    async def find(self, organisation_id: str, system: str, value: str) -> PatientRef | None:
        """Return the organisation's patient with this identifier, or None."""
        ...

    async def record(
        self, organisation_id: str, details: PatientDetails, *, actor: str
    ) -> tuple[PatientRef, bool]:
        """Register the patient, or update the one with this identifier; return it and whether
        it is new. Raise `Invalid` naming the detail a registration lacks."""
        ...


class EquipmentRegistry(Protocol):
    """Find devices by the identifier another system knows them by (an HL7 OBX-18, an EUI-64),
    registering equipment never seen as discovered, and follow the patient it is attached to.
    The devices context implements it."""

    async def equipment(
        self, organisation_id: str, identifier: str, *, actor: str
    ) -> tuple[DeviceRef, bool]:
        """Return the device with this identifier (its serial number), registering it if none
        has it; and whether it is new."""
        ...

    async def attach(
        self, device: DeviceRef, patient_id: str, *, since: dt.datetime, actor: str
    ) -> DeviceRef:
        """Assign the device to the patient from `since` (no earlier than its last assignment
        change) unless it already is; return it as it now is."""
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

    async def admins(self, organisation_id: str) -> list[str]:
        """Return the ids of the organisation's active admins (who to tell of its reports)."""
        ...


@dataclass(frozen=True)
class ReadingQuery:
    """Which stored readings of an organisation to read; None means any, and every condition
    given must hold. Name a patient or a device: every read walks their series' keys."""

    organisation_id: str
    patient_id: str | None = None
    device_id: str | None = None
    types: frozenset[str] | None = None
    patients: frozenset[str] | None = None
    """Only readings taken of one of these patients (a clinician's care scope)."""
    start: dt.datetime | None = None
    """Inclusive."""
    end: dt.datetime | None = None
    """Exclusive."""


@dataclass(frozen=True)
class StoredReading:
    """One stored reading, in its catalogue unit: (device_id, type, at) identifies it."""

    device_id: str
    type: str
    at: dt.datetime
    value: float
    patient_id: str | None


@dataclass(frozen=True)
class ReadingBucket:
    """The readings of one type in one time bucket: their low, high, mean and count."""

    type: str
    start: dt.datetime
    low: float
    high: float
    mean: float
    count: int


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

    async def page(
        self, query: ReadingQuery, *, newest_first: bool, limit: int
    ) -> list[StoredReading]:
        """Return up to `limit` readings matching `query` in time order (ties: in a fixed order
        of their series)."""
        ...

    async def latest(self, query: ReadingQuery, *, per_type: int) -> list[StoredReading]:
        """Return the newest `per_type` readings of each type matching `query` (from whichever
        device took them), newest first."""
        ...

    async def types_measured(self, device_id: str) -> list[str]:
        """Return the types of reading the device has sent, sorted."""
        ...

    async def buckets(self, query: ReadingQuery, *, bucket_seconds: int) -> list[ReadingBucket]:
        """Return each type's readings matching `query` (of a patient or a device, between its
        start and end) folded into buckets of `bucket_seconds` counted from the epoch, oldest
        first: from the chart rollups where they tile the range."""
        ...

    async def rejections(
        self,
        organisation_id: str,
        start: dt.datetime,
        end: dt.datetime,
        patients: frozenset[str] | None,
    ) -> dict[str, int]:
        """Count what the data-quality gate refused in [start, end) (of these patients only
        unless None), by what was refused: a measurement type, or the part of the message."""
        ...


@dataclass(frozen=True)
class Measured:
    """Measurements a device took at one instant, each in its catalogue unit."""

    at: dt.datetime
    values: Mapping[str, float]


class ReadingIntake(Protocol):
    """Store readings a transport outside the ingest context brings (HL7 over MLLP). The
    ingest context implements it, with the same gate and store as its own transports."""

    async def vouched(
        self, device: DeviceRef, readings: Sequence[Measured], *, transport: str
    ) -> int:
        """Store, all or nothing, readings a transport vouches `device` took; return how many
        measurements were new. Raise `Invalid` naming what the gate refused, `Unavailable`
        while the store is backlogged."""
        ...


@dataclass(frozen=True)
class AlarmFact:
    """What a report may know of an alarm: when it was raised, answered and escalated."""

    id: str
    patient_id: str | None
    priority: str
    raised_at: dt.datetime
    acknowledged_at: dt.datetime | None
    escalations: int


@dataclass(frozen=True)
class ScoreFact:
    """One NEWS2 score of a patient."""

    patient_id: str
    scored_at: dt.datetime
    score: int


class AlarmHistory(Protocol):
    """Read back an organisation's alarms and NEWS2 scores of a period (the reports). The
    analytics context implements it."""

    async def alarms(
        self,
        organisation_id: str,
        start: dt.datetime,
        end: dt.datetime,
        patients: frozenset[str] | None,
    ) -> list[AlarmFact]:
        """Return the alarms raised in [start, end), of these patients only unless None."""
        ...

    async def scores(
        self, patient_ids: Sequence[str], start: dt.datetime, end: dt.datetime
    ) -> list[ScoreFact]:
        """Return the patients' NEWS2 scores in [start, end), oldest first."""
        ...
