"""HL7 v2 to FHIR R4: a PCD-01 observation or an ADT message as a FHIR transaction Bundle.

The same readers as the MLLP listener (`hl7v2`, `pcd01`, `adt`) and the same mappings as the
FHIR API (`fhir`), without medcloud's registry: a patient and each piece of equipment get ids
derived from what the message names (its identifier, its EUI-64), so converting the same
patient's messages again updates the same resources instead of adding new ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import tzinfo

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource

from medcloud.interop import adt, fhir, hl7v2, pcd01
from medcloud.interop.hl7v2 import Fault

NAMESPACE = uuid.UUID("6f7d1c5e-3b0a-4d8e-9a57-2c1f0e4b7a93")
"""Of the ids derived from names in messages (uuid5): fixed, or the same patient would get a
new resource with every release."""
UNKNOWN = "unknown"


class Untranslatable(Exception):
    """The message was read but says something that cannot become FHIR resources."""

    def __init__(self, faults: list[Fault]) -> None:
        super().__init__("; ".join(f.text for f in faults))
        self.faults = faults


@dataclass(frozen=True)
class Converted:
    """A message as FHIR: the transaction, and which message it was."""

    control_id: str
    message_type: str
    bundle: Bundle


def to_fhir(
    raw: str | bytes,
    *,
    identifier_system: str,
    organisation_id: str,
    default_tz: tzinfo | None = None,
) -> Converted:
    """Convert one ORU^R01 or ADT message; raise `hl7v2.Unparseable` for what cannot be read,
    `Untranslatable` for what was read but refused."""
    header, message = hl7v2.parse(raw, default_tz=default_tz)
    kind = f"{header.message_type}^{header.trigger}"
    resources: list[Resource]
    if kind == "ORU^R01":
        resources = _observed(header, message, identifier_system, organisation_id, default_tz)
    elif header.message_type == "ADT":
        admission = adt.parse_adt(header, message)
        _refuse([f for f in admission.faults if f.severity == "E"])
        resources = [_patient(admission, identifier_system, organisation_id)]
    else:
        raise Untranslatable(
            [Fault("MSH", 1, 9, None, "200", "only ORU^R01 and ADT messages are converted")]
        )
    return Converted(header.control_id, kind, fhir.transaction(resources))


def _observed(
    header: hl7v2.Header,
    message: hl7v2.Message,
    identifier_system: str,
    organisation_id: str,
    default_tz: tzinfo | None,
) -> list[Resource]:
    oru = pcd01.parse_oru(header, message, default_tz=default_tz)
    _refuse([f for f in oru.faults if f.severity == "E"])
    resources: list[Resource] = []
    patient_id = None
    if oru.patient:
        record = _patient(adt.read_patient(message), identifier_system, organisation_id)
        patient_id = record.id
        resources.append(record)
    fallback = header.sending_application.universal_id or None
    devices: dict[str, str] = {}
    readings = []
    for observation in oru.observations:
        equipment = observation.equipment or fallback
        if equipment is None:
            fault = Fault("OBX", observation.segment, 18, None, "101", "OBX-18 names no equipment")
            raise Untranslatable([fault])
        device_id = devices.setdefault(equipment, _derived("device", equipment))
        readings.append(
            fhir.ReadingRecord(
                type=observation.type,
                value=observation.value,
                at=observation.at,
                patient_id=patient_id,
                device_id=device_id,
            )
        )
    for equipment, device_id in devices.items():
        resources.append(
            fhir.device(
                fhir.DeviceRecord(
                    id=device_id,
                    serial_number=equipment,
                    manufacturer=UNKNOWN,
                    model=UNKNOWN,
                    udi=None,
                    firmware_version=None,
                    status=UNKNOWN,
                    decommissioned=False,
                    patient_id=patient_id,
                    organisation_id=organisation_id,
                )
            )
        )
    resources.extend(fhir.observations(readings))
    return resources


def _patient(admission: adt.Admission, identifier_system: str, organisation_id: str) -> Resource:
    identifier = adt.preferred(admission.identifiers)
    if identifier is None:
        raise Untranslatable([Fault("PID", 1, 3, None, "101", "PID-3 names no identifier")])
    return fhir.patient(
        fhir.PatientRecord(
            id=_derived("patient", f"{identifier_system}|{identifier.value}"),
            identifier_system=identifier_system,
            identifier_value=identifier.value,
            family_name=admission.family_name or "",
            given_name=admission.given_name or "",
            birth_date=admission.birth_date,
            sex=admission.sex,
            organisation_id=organisation_id,
            ward=admission.ward,
        )
    )


def _derived(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


def _refuse(faults: list[Fault]) -> None:
    if faults:
        raise Untranslatable(faults)
