"""Use cases of the FHIR R4 read API: reads and searches of patients, devices and observations.

Everything is read through the published interfaces (`PatientDirectory`, `DeviceDirectory`,
`ReadingHistory`, `CareDirectory`) under the same policy as the REST API: the route names the
action, objects of another organisation or outside the user's care scope are answered 404,
and every read is audited (counts and ids, never values or names). Resources are built by
`medcloud.interop.fhir` only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource

from medcloud.interop import fhir, fhir_observations
from medcloud.interop.fhir_access import (
    Sources,
    audit,
    care_scope,
    device_in_organisation,
    device_record,
    device_visible,
    patient_in_scope,
    patient_record,
    visible_patients,
)
from medcloud.interop.fhir_search import (
    DeviceSearch,
    InvalidSearch,
    LastN,
    MetricSearch,
    ObservationSearch,
    PatientSearch,
    SearchUrls,
)
from medcloud.platform.directory import (
    DeviceQuery,
    PatientQuery,
    ReadingQuery,
)
from medcloud.platform.errors import Invalid, NotFound
from medcloud.platform.paging import decode_cursor, encode_cursor
from medcloud.platform.policy import ensure_in_care_scope
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork

_MICROSECOND = dt.timedelta(microseconds=1)


async def read_patient(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, patient_id: str
) -> Resource:
    """Return Patient/{id} to a user caring for the patient (audited)."""
    card = await patient_in_scope(sources, principal, patient_id)
    await audit(uow, principal, "patient.read", "patient", card.id, patient_id=card.id)
    return fhir.patient(patient_record(card))


async def search_patients(
    *,
    uow: UnitOfWork,
    sources: Sources,
    principal: UserPrincipal,
    search: PatientSearch,
    urls: SearchUrls,
) -> Bundle:
    """Return one page of the patients in the user's care scope matching `search` (audited)."""
    scope = await care_scope(sources, principal)
    identifier = search.identifier
    query = PatientQuery(
        ids=search.ids,
        identifier_system=None if identifier is None else identifier.system,
        identifier_value=None if identifier is None else identifier.code,
        name=search.name,
        patients=None if scope.whole_organisation else scope.patient_ids,
    )
    after = _created_cursor(search.paging.cursor)
    found = await sources.patients.search(
        principal.organisation_id, query, limit=search.paging.count + 1, after=after
    )
    shown = found[: search.paging.count]
    await audit(uow, principal, "patient.list", "patient", None, count=len(shown))
    return _bundle(
        [fhir.patient(patient_record(card)) for card in shown],
        urls,
        next_cursor=_created_next(found, search.paging.count),
        first_page=after is None,
    )


async def read_device(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, device_id: str
) -> Resource:
    """Return Device/{id} to a user who may see the device (audited)."""
    card = await device_visible(sources, principal, device_id)
    await audit(uow, principal, "device.read", "device", card.id, patient_id=card.patient_id)
    return fhir.device(device_record(card))


async def search_devices(
    *,
    uow: UnitOfWork,
    sources: Sources,
    principal: UserPrincipal,
    search: DeviceSearch,
    urls: SearchUrls,
) -> Bundle:
    """Return one page of the devices the user may see matching `search` (audited)."""
    identifier = search.identifier
    if identifier is not None and identifier.system:
        # Serial numbers carry no system (their identifier type says what they are).
        return _bundle([], urls, next_cursor=None, first_page=True)
    if search.patient_id is not None:
        await patient_in_scope(sources, principal, search.patient_id)
    query = DeviceQuery(
        ids=search.ids,
        patient_id=search.patient_id,
        serial_number=None if identifier is None else identifier.code,
        patients=await visible_patients(sources, principal),
    )
    after = _created_cursor(search.paging.cursor)
    found = await sources.devices.search(
        principal.organisation_id, query, limit=search.paging.count + 1, after=after
    )
    shown = found[: search.paging.count]
    await audit(uow, principal, "device.list", "device", None, count=len(shown))
    return _bundle(
        [fhir.device(device_record(card)) for card in shown],
        urls,
        next_cursor=_created_next(found, search.paging.count),
        first_page=after is None,
    )


async def read_metric(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, metric_id: str
) -> Resource:
    """Return DeviceMetric/{id}: what a device the user may see measures of one type."""
    parsed = fhir.parse_device_metric_id(metric_id)
    if parsed is None:
        raise NotFound("device metric not found")
    device_id, type_code = parsed
    card = await device_visible(sources, principal, device_id)
    if type_code not in await sources.readings.types_measured(device_id):
        raise NotFound("device metric not found")
    await audit(uow, principal, "device.read", "device", card.id, patient_id=card.patient_id)
    return fhir.device_metric(device_id=device_id, type_code=type_code, status=card.status)


async def search_metrics(
    *,
    uow: UnitOfWork,
    sources: Sources,
    principal: UserPrincipal,
    search: MetricSearch,
    urls: SearchUrls,
) -> Bundle:
    """Return the metrics of a device the user may see: one per type it has measured."""
    wanted = {fhir.parse_device_metric_id(i) for i in search.ids} if search.ids else None
    device_ids = {search.device_id} if search.device_id else {p[0] for p in wanted or () if p}
    metrics: list[Resource] = []
    for device_id in sorted(device_ids):
        try:
            card = await device_visible(sources, principal, device_id)
        except NotFound:
            if search.device_id is not None:
                raise
            continue  # an _id of a device out of reach matches nothing
        for type_code in await sources.readings.types_measured(device_id):
            if wanted is None or (device_id, type_code) in wanted:
                metrics.append(
                    fhir.device_metric(device_id=device_id, type_code=type_code, status=card.status)
                )
        await audit(uow, principal, "device.read", "device", card.id, patient_id=card.patient_id)
    # A device measures a handful of types: one page holds them all.
    return _bundle(metrics, urls, next_cursor=None, first_page=True)


async def read_observation(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, observation_id: str
) -> Resource:
    """Return Observation/{id} to a user caring for its patient (audited)."""
    observation = await _observation(sources, principal, observation_id)
    if observation is None:
        raise NotFound("observation not found")
    patient_id = _subject(observation)
    await audit(
        uow,
        principal,
        "readings.read",
        "patient" if patient_id else "device",
        patient_id or _device(observation),
        patient_id=patient_id,
        count=1,
    )
    return observation


async def search_observations(
    *,
    uow: UnitOfWork,
    sources: Sources,
    principal: UserPrincipal,
    search: ObservationSearch,
    urls: SearchUrls,
) -> Bundle:
    """Return one page of the observations of a patient or a device in the user's care scope,
    by effective time (audited)."""
    scope = await care_scope(sources, principal)
    if search.patient_id is not None:
        await patient_in_scope(sources, principal, search.patient_id, scope=scope)
    if search.device_id is not None:
        device = await device_in_organisation(sources, principal, search.device_id)
        ensure_in_care_scope(scope, device.patient_id, "device")
    matches = fhir_observations.wanted(search.codes, search.categories)
    if search.ids is not None:
        return await _observations_by_id(uow, sources, principal, search, urls, matches)
    query = ReadingQuery(
        organisation_id=principal.organisation_id,
        patient_id=search.patient_id,
        device_id=search.device_id,
        types=fhir_observations.types_for(search.codes, search.categories),
        patients=None if scope.whole_organisation else scope.patient_ids,
        start=search.start,
        end=search.end,
    )
    backwards, after = _observation_cursor(search.paging.cursor)
    newest_first = search.newest_first != backwards
    placed, more = await fhir_observations.page(
        sources.readings,
        query,
        matches=matches,
        newest_first=newest_first,
        count=search.paging.count,
        after=after,
    )
    if backwards:
        placed.reverse()
    # Going forwards, more means a next page; backwards, a previous one. Having come from a
    # cursor means there is a page on the side it came from.
    has_next = more if not backwards else True
    has_previous = (after is not None) if not backwards else more
    await audit(
        uow,
        principal,
        "readings.read",
        "patient" if search.patient_id else "device",
        search.patient_id or search.device_id,
        patient_id=search.patient_id,
        count=len(placed),
    )
    first, last = (placed[0], placed[-1]) if placed else (None, None)
    return fhir.searchset(
        [observation for _at, observation in placed],
        base_url=urls.base_url,
        total=None,
        self_url=urls.self_url,
        next_url=urls.at(_position("n", last)) if has_next and last else None,
        previous_url=urls.at(_position("p", first)) if has_previous and first else None,
    )


async def last_observations(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, search: LastN, urls: SearchUrls
) -> Bundle:
    """Return the newest `max` observations of each code for a patient in the user's care
    scope (Observation-lastn), audited."""
    await patient_in_scope(sources, principal, search.patient_id)
    query = ReadingQuery(
        organisation_id=principal.organisation_id,
        patient_id=search.patient_id,
        types=fhir_observations.types_for(search.codes, search.categories),
    )
    newest = await sources.readings.latest(query, per_type=search.max)
    matches = fhir_observations.wanted(search.codes, search.categories)
    per_code: dict[tuple[tuple[str | None, str | None], ...], int] = {}
    chosen: list[Resource] = []
    for _at, observation in fhir_observations.build(newest, newest_first=True):
        code = tuple((c.system, c.code) for c in observation.code.coding or [])
        if matches(observation) and per_code.get(code, 0) < search.max:
            per_code[code] = per_code.get(code, 0) + 1
            chosen.append(observation)
    await audit(
        uow,
        principal,
        "readings.read",
        "patient",
        search.patient_id,
        patient_id=search.patient_id,
        count=len(chosen),
        view="lastn",
    )
    return _bundle(chosen, urls, next_cursor=None, first_page=True)


async def _observation(
    sources: Sources, principal: UserPrincipal, observation_id: str
) -> Observation | None:
    """The Observation of this id in the user's care scope, or None."""
    parsed = fhir.parse_observation_id(observation_id)
    if parsed is None:
        return None
    device_id, type_code, at = parsed
    types = fhir_observations.BP_PARTS if type_code == fhir.BLOOD_PRESSURE_PANEL else {type_code}
    try:
        await device_in_organisation(sources, principal, device_id)
    except NotFound:
        return None
    scope = await care_scope(sources, principal)
    query = ReadingQuery(
        organisation_id=principal.organisation_id,
        device_id=device_id,
        types=frozenset(types),
        patients=None if scope.whole_organisation else scope.patient_ids,
        start=at,
        end=at + _MICROSECOND,
    )
    readings = await sources.readings.page(query, newest_first=False, limit=len(types) * 100)
    built = fhir_observations.build(readings, newest_first=False)
    return next((o for _at, o in built if o.id == observation_id), None)


async def _observations_by_id(
    uow: UnitOfWork,
    sources: Sources,
    principal: UserPrincipal,
    search: ObservationSearch,
    urls: SearchUrls,
    matches: Callable[[Observation], bool],
) -> Bundle:
    """The Observations of `search.ids` that the rest of the search also matches."""
    found: list[Observation] = []
    for observation_id in sorted(search.ids or ()):
        observation = await _observation(sources, principal, observation_id)
        if observation is None or not matches(observation):
            continue
        parsed = fhir.parse_observation_id(observation_id)
        if (
            search.patient_id not in (None, _subject(observation))
            or search.device_id not in (None, _device(observation))
            or (parsed is not None and not _within(parsed[2], search.start, search.end))
        ):
            continue
        found.append(observation)
    for patient_id in sorted({_subject(o) or "" for o in found}):
        shown = sum(1 for o in found if (_subject(o) or "") == patient_id)
        await audit(
            uow,
            principal,
            "readings.read",
            "patient",
            patient_id or None,
            patient_id=patient_id or None,
            count=shown,
        )
    return _bundle(list(found), urls, next_cursor=None, first_page=True)


def _within(at: dt.datetime, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    return (start is None or at >= start) and (end is None or at < end)


def _subject(observation: Observation) -> str | None:
    reference = observation.subject.reference if observation.subject else None
    return reference.split("/", 1)[1] if reference else None


def _device(observation: Observation) -> str | None:
    reference = observation.device.reference if observation.device else None
    return reference.split("/", 1)[1] if reference else None


def _bundle(
    resources: list[Resource], urls: SearchUrls, *, next_cursor: str | None, first_page: bool
) -> Bundle:
    # A total is cheap only when the whole result is this one page.
    complete = first_page and next_cursor is None
    return fhir.searchset(
        resources,
        base_url=urls.base_url,
        total=len(resources) if complete else None,
        self_url=urls.self_url,
        next_url=urls.at(next_cursor) if next_cursor else None,
    )


def _created_cursor(cursor: str | None) -> tuple[dt.datetime, str] | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except Invalid as exc:
        raise InvalidSearch("_cursor", "not a cursor this server issued") from exc


def _created_next(found: list[Any], count: int) -> str | None:
    if len(found) <= count:
        return None
    last = found[count - 1]
    return encode_cursor(last.created_at, last.id)


def _position(direction: str, placed: fhir_observations.Placed) -> str:
    at, observation = placed
    return encode_cursor(at, f"{direction}.{observation.id}")


def _observation_cursor(cursor: str | None) -> tuple[bool, fhir_observations.Position | None]:
    """(whether the page goes backwards from the position, the position)."""
    if cursor is None:
        return False, None
    try:
        at, key = decode_cursor(cursor)
    except Invalid as exc:
        raise InvalidSearch("_cursor", "not a cursor this server issued") from exc
    direction, _, observation_id = key.partition(".")
    if direction not in ("n", "p") or not observation_id:
        raise InvalidSearch("_cursor", "not a cursor this server issued")
    return direction == "p", (at.astimezone(dt.UTC), observation_id)
