"""ADT^A01 (admit), A04 (register) and A08 (update patient information), read as a patient update.

The hospital's ADT feed says who a patient is and which bed they are in; medcloud needs the
identifiers to match monitors' ORU messages to a patient, the name and birth date to show, and
the ward, room and bed that PV1-3 places them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, tzinfo
from typing import Literal

from medcloud.interop.hl7v2 import Fault, Header, Identifier, Message, Segment, identifiers

__all__ = ["EVENTS", "Admission", "Identifier", "parse_adt"]

Sex = Literal["male", "female", "other", "unknown"]

EVENTS = frozenset({"A01", "A04", "A08"})

# HL7 table 0001 (administrative sex): A ambiguous is "other", N not applicable is "unknown".
_SEX: dict[str, Sex] = {
    "M": "male",
    "F": "female",
    "O": "other",
    "A": "other",
    "U": "unknown",
    "N": "unknown",
    "": "unknown",
}


@dataclass(frozen=True)
class Admission:
    """A patient's identity and location as an ADT event states them."""

    event: str
    identifiers: list[Identifier]
    family_name: str | None
    given_name: str | None
    birth_date: date | None
    sex: Sex
    ward: str | None
    room: str | None
    bed: str | None
    faults: list[Fault] = field(default_factory=list)


def parse_adt(header: Header, message: Message, *, default_tz: tzinfo | None = None) -> Admission:
    """Read an ADT A01, A04 or A08; a fault of severity E means answer AE and store nothing."""
    del default_tz  # PID-7 is a calendar date as written, never shifted to another zone.
    event = header.trigger
    faults: list[Fault] = []
    if header.message_type != "ADT":
        faults.append(Fault("MSH", 1, 9, 1, "200", "only ADT messages are read here"))
    elif event not in EVENTS:
        faults.append(Fault("MSH", 1, 9, 2, "201", "only ADT A01, A04 and A08 are read"))
    admission = read_patient(message, event=event)
    return replace(admission, faults=faults + admission.faults)


def read_patient(message: Message, *, event: str = "") -> Admission:
    """Read who the message is about and where they lie (PID, PV1): of an ADT, or of an
    observation naming a patient to register."""
    faults: list[Fault] = []
    pid = message.first("PID")
    if pid is None:
        faults.append(Fault("PID", 1, None, None, "100", "the PID segment is missing"))
        return Admission(event, [], None, None, None, "unknown", None, None, None, faults)
    found = identifiers(pid)
    if not found:
        faults.append(Fault("PID", 1, 3, None, "101", "PID-3 patient identifier is missing"))
    sex_code = pid.value(8, 1).strip().upper()
    sex = _SEX.get(sex_code)
    if sex is None:
        faults.append(Fault("PID", 1, 8, None, "103", "PID-8 is not an HL7 sex code", "W"))
        sex = "unknown"
    birth_date = _birth_date(pid, faults)
    pv1 = message.first("PV1")
    if pv1 is None:
        faults.append(Fault("PV1", 1, None, None, "100", "the PV1 segment is missing", "W"))
    return Admission(
        event=event,
        identifiers=found,
        family_name=pid.value(5, 1, 1).strip() or None,
        given_name=pid.value(5, 2).strip() or None,
        birth_date=birth_date,
        sex=sex,
        ward=_optional(pv1, 3, 1),
        room=_optional(pv1, 3, 2),
        bed=_optional(pv1, 3, 3),
        faults=faults,
    )


def preferred(identifiers: Sequence[Identifier]) -> Identifier | None:
    """The medical record number when PID-3 has several (CX.5 type MR), else the first."""
    return next((i for i in identifiers if i.type_code == "MR"), None) or next(
        iter(identifiers), None
    )


def _birth_date(pid: Segment, faults: list[Fault]) -> date | None:
    text = pid.value(7, 1).strip()
    if not text:
        return None
    digits = text[:8]
    try:
        if len(digits) < 8 or not digits.isascii() or not digits.isdigit():
            raise ValueError
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        # A year or month alone is a valid DTM but not a birth date to show as one.
        faults.append(Fault("PID", 1, 7, 1, "102", "PID-7 is not a full date of birth", "W"))
        return None


def _optional(segment: Segment | None, field_number: int, component: int) -> str | None:
    return (segment.value(field_number, component).strip() or None) if segment else None
