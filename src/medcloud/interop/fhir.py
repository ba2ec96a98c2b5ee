"""FHIR R4 resources from medcloud's patients, devices and readings: the one mapping module.

Both the /fhir/r4 API and the HL7 → FHIR function build their resources here. It is pure: frozen
records in, fhir.resources R4B models out (R4B's models validate R4 4.0.1 content for the
resources used here), no I/O. Ids are deterministic (see `fhir_ids`); bundles, the
CapabilityStatement and serialisation live in `fhir_server` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceUdiCarrier, DeviceVersion
from fhir.resources.R4B.devicemetric import DeviceMetric
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from medcloud.interop import mdc
from medcloud.interop.fhir_ids import (
    FHIR_ID,
    device_metric_id,
    observation_id,
    parse_device_metric_id,
    parse_observation_id,
    utc,
)
from medcloud.interop.fhir_server import (
    capability_statement,
    ndjson,
    operation_outcome,
    searchset,
    to_json,
    transaction,
)
from medcloud.platform.catalogue import CATALOGUE

__all__ = [
    "BLOOD_PRESSURE_PANEL",
    "FHIR_ID",
    "DeviceRecord",
    "PatientRecord",
    "ReadingRecord",
    "capability_statement",
    "device",
    "device_metric",
    "device_metric_id",
    "ndjson",
    "observation_id",
    "observations",
    "operation_outcome",
    "parse_device_metric_id",
    "parse_observation_id",
    "patient",
    "searchset",
    "to_json",
    "transaction",
]

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
_PROFILE = "http://hl7.org/fhir/StructureDefinition/"

BLOOD_PRESSURE_PANEL = "blood_pressure"
"""The type in the id of an Observation grouping systolic, diastolic and mean pressure."""

# The R4 vital-signs profiles (observation-vitalsigns.html) a type has beyond the generic one.
_SPECIFIC_PROFILES = {
    "heart_rate": "heartrate",
    "spo2": "oxygensat",
    "respiratory_rate": "resprate",
    "temperature": "bodytemp",
    "weight": "bodyweight",
}

# Codings a profile requires besides the catalogue's: R4's oxygensat fixes LOINC 2708-6, of which
# the catalogue's 59408-5 (by pulse oximetry) is a refinement; the spec's satO2 example and US
# Core carry both.
_EXTRA_LOINC = {"spo2": "2708-6"}

# Categories (CodeSystem observation-category) other than vital-signs. ACVPU is "exam": a
# clinician's direct observation of responsiveness ("physical exam findings including direct
# observations made by a clinician"), neither a body function the vital-signs value set lists
# nor a scored instrument ("survey", e.g. Apgar). A capillary glucose is an analyte
# concentration, which the category defines as "laboratory", point of care or not. Both are
# outside the vital-signs profiles, whose category slice is fixed to vital-signs. Oxygen flow
# stays a vital sign: US Core charts it with the pulse oximetry it qualifies.
_CATEGORIES = {"consciousness": "exam", "glucose": "laboratory"}

_BP_PANEL_LOINC = "85354-9"
_BP_PARTS = ("systolic_bp", "diastolic_bp", "mean_bp")
_SEXES = frozenset({"male", "female", "other", "unknown"})


@dataclass(frozen=True)
class PatientRecord:
    """What FHIR shows of a patient."""

    id: str
    identifier_system: str
    identifier_value: str
    family_name: str
    given_name: str
    birth_date: date | None
    sex: str | None
    """"male", "female", "other" or "unknown" (FHIR AdministrativeGender)."""
    organisation_id: str
    ward: str | None


@dataclass(frozen=True)
class DeviceRecord:
    """What FHIR shows of a device."""

    id: str
    serial_number: str
    manufacturer: str
    model: str
    udi: str | None
    firmware_version: str | None
    status: str
    """Connectivity ("online", "offline", "unknown"...), which R4's Device does not carry."""
    decommissioned: bool
    patient_id: str | None
    organisation_id: str


@dataclass(frozen=True)
class ReadingRecord:
    """One reading, in its catalogue unit; (device_id, type, at) identifies it."""

    type: str
    value: float
    at: datetime
    patient_id: str | None
    device_id: str


def patient(record: PatientRecord) -> Patient:
    """Build the Patient for `record`."""
    if record.sex is not None and record.sex not in _SEXES:
        raise ValueError(f"sex {record.sex!r} is not a FHIR AdministrativeGender")
    # FHIR strings may not be empty, so an unknown name part is left out rather than "".
    name = HumanName(
        family=record.family_name or None,
        given=[record.given_name] if record.given_name else None,
    )
    return Patient(
        id=record.id,
        identifier=[
            Identifier(system=record.identifier_system or None, value=record.identifier_value)
        ],
        name=[name] if name.family or name.given else None,
        birthDate=record.birth_date,
        gender=record.sex,
        managingOrganization=_reference("Organization", record.organisation_id),
    )


def device(record: DeviceRecord) -> Device:
    """Build the Device for `record`."""
    return Device(
        id=record.id,
        # v2 table 0203 "SNO" marks the identifier as the serial number, so a client can find
        # the device by what is printed on it.
        identifier=[
            Identifier(
                type=_concept(
                    Coding(
                        system="http://terminology.hl7.org/CodeSystem/v2-0203",
                        code="SNO",
                        display="Serial Number",
                    )
                ),
                value=record.serial_number,
            )
        ],
        udiCarrier=[DeviceUdiCarrier(carrierHRF=record.udi)] if record.udi else None,
        # Device.status is the record's state (R4 FHIRDeviceStatus), not connectivity: a
        # decommissioned device is inactive, any other one in service.
        status="inactive" if record.decommissioned else "active",
        manufacturer=record.manufacturer,
        deviceName=[DeviceDeviceName(name=record.model, type="model-name")],
        serialNumber=record.serial_number,
        version=(
            [DeviceVersion(type=CodeableConcept(text="firmware"), value=record.firmware_version)]
            if record.firmware_version
            else None
        ),
        patient=_reference("Patient", record.patient_id) if record.patient_id else None,
        owner=_reference("Organization", record.organisation_id),
    )


def device_metric(*, device_id: str, type_code: str, status: str | None = None) -> DeviceMetric:
    """Build the DeviceMetric for what `device_id` measures of `type_code`."""
    kind = CATALOGUE[type_code]
    # R4 DeviceMetricOperationalStatus has on/off; a device of unknown connectivity gets none.
    operational = {"online": "on", "offline": "off"}.get(status or "")
    return DeviceMetric(
        id=device_metric_id(device_id=device_id, type_code=type_code),
        type=_type_concept(type_code),
        unit=_concept(Coding(system=UCUM, code=kind.unit)),
        source=_reference("Device", device_id),
        operationalStatus=operational,
        category="measurement",
    )


def observations(readings: Sequence[ReadingRecord]) -> list[Observation]:
    """Build the Observations for `readings`, blood pressures grouped as one panel each."""
    latest: dict[tuple[str, str, datetime], ReadingRecord] = {}
    for reading in readings:
        # Later duplicates of a series key win; an id appears once (a transaction must not PUT
        # the same resource twice).
        latest[(reading.device_id, reading.type, utc(reading.at))] = reading
    panels: dict[tuple[str, datetime, str | None], dict[str, ReadingRecord]] = {}
    for (_, type_code, at), reading in latest.items():
        if type_code in _BP_PARTS:
            panels.setdefault((reading.device_id, at, reading.patient_id), {})[type_code] = reading
    built: list[Observation] = []
    emitted: set[tuple[str, datetime, str | None]] = set()
    for (_, type_code, at), reading in latest.items():
        group = (reading.device_id, at, reading.patient_id)
        parts = panels.get(group, {})
        # The R4 bp profile requires both systolic and diastolic components: a lone one stays
        # its own Observation.
        if type_code in _BP_PARTS and {"systolic_bp", "diastolic_bp"} <= parts.keys():
            if group not in emitted:
                emitted.add(group)
                built.append(_blood_pressure(parts, at))
        else:
            built.append(_single(reading, at))
    return built


def _single(reading: ReadingRecord, at: datetime) -> Observation:
    category = _CATEGORIES.get(reading.type, "vital-signs")
    profiles = [f"{_PROFILE}vitalsigns"] if category == "vital-signs" else []
    if reading.type in _SPECIFIC_PROFILES:
        profiles.append(_PROFILE + _SPECIFIC_PROFILES[reading.type])
    return _observation(
        resource_id=observation_id(device_id=reading.device_id, type=reading.type, at=at),
        category=category,
        profiles=profiles,
        code=_type_concept(reading.type),
        reading=reading,
        at=at,
        value=_quantity(reading.type, reading.value),
    )


def _blood_pressure(parts: dict[str, ReadingRecord], at: datetime) -> Observation:
    first = parts["systolic_bp"]
    code = CodeableConcept(
        coding=[
            Coding(system=LOINC, code=_BP_PANEL_LOINC),
            Coding(
                system=MDC,
                code=str(mdc.CODES["MDC_PRESS_BLD_NONINV"]),
                display="MDC_PRESS_BLD_NONINV",
            ),
        ],
        text="Blood pressure",
    )
    components = [
        ObservationComponent(
            code=_type_concept(part), valueQuantity=_quantity(part, parts[part].value)
        )
        for part in _BP_PARTS
        if part in parts
    ]
    return _observation(
        resource_id=observation_id(device_id=first.device_id, type=BLOOD_PRESSURE_PANEL, at=at),
        category="vital-signs",
        profiles=[f"{_PROFILE}vitalsigns", f"{_PROFILE}bp"],
        code=code,
        reading=first,
        at=at,
        components=components,
    )


def _observation(
    *,
    resource_id: str,
    category: str,
    profiles: list[str],
    code: CodeableConcept,
    reading: ReadingRecord,
    at: datetime,
    value: Quantity | None = None,
    components: list[ObservationComponent] | None = None,
) -> Observation:
    # The R4 vital-signs profile makes subject 1..1: without a patient the Observation is still
    # valid, but claims no profile it would break.
    claimed = profiles if reading.patient_id else []
    return Observation(
        id=resource_id,
        meta=Meta(profile=claimed) if claimed else None,
        status="final",
        category=[_concept(Coding(system=_CATEGORY_SYSTEM, code=category))],
        code=code,
        subject=_reference("Patient", reading.patient_id) if reading.patient_id else None,
        effectiveDateTime=at,
        device=_reference("Device", reading.device_id),
        valueQuantity=value,
        component=components,
    )


def _type_concept(type_code: str) -> CodeableConcept:
    kind = CATALOGUE[type_code]
    loinc = [_EXTRA_LOINC[type_code]] if type_code in _EXTRA_LOINC else []
    codings = [Coding(system=LOINC, code=code) for code in [*loinc, kind.loinc]]
    if kind.mdc is not None:
        codings.append(Coding(system=MDC, code=str(mdc.CODES[kind.mdc]), display=kind.mdc))
    return CodeableConcept(coding=codings, text=kind.display)


def _quantity(type_code: str, value: float) -> Quantity:
    if not math.isfinite(value):
        raise ValueError(f"{type_code} value {value} is not a FHIR decimal")
    unit = CATALOGUE[type_code].unit
    # repr() is the shortest string that reads back as the same float, so 36.6 stays 36.6.
    return Quantity(value=Decimal(repr(float(value))), unit=unit, system=UCUM, code=unit)


def _concept(coding: Coding) -> CodeableConcept:
    return CodeableConcept(coding=[coding])


def _reference(resource_type: str, resource_id: str) -> Reference:
    return Reference(reference=f"{resource_type}/{resource_id}")
