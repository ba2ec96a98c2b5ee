"""IHE PCD-01 (Communicate PCD Data): ORU^R01 from monitors and gateways, read as typed readings.

A monitor reports many more metrics than medcloud stores (alarm limits, ST segments, perfusion
index, device settings) and wraps them in its IEEE 11073 containment tree: MDS, VMD and channel
rows that carry no value. Those rows, unknown metrics, results the device marks as not obtained,
and 11073 "no value" markers are skipped and counted, never faults. A metric we do store whose
value, unit or time cannot be read is a fault: the caller answers AE and stores nothing from the
message, so that the sender keeps it and an operator can see why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from medcloud.interop import mdc
from medcloud.interop.hl7v2 import (
    Fault,
    Header,
    Identifier,
    Message,
    Segment,
    identifiers,
    parse_time,
)
from medcloud.platform.catalogue import to_catalogue_unit

__all__ = ["Identifier", "Observation", "Oru", "parse_oru"]


@dataclass(frozen=True)
class Observation:
    """One reading of a catalogue type, in the catalogue's unit."""

    type: str
    value: float
    at: datetime
    """Aware UTC: OBX-14, else the group's OBR-7, else MSH-7."""
    equipment: str | None
    """OBX-18 (EUI-64 or the like), else that of the enclosing MDS row, else None."""
    segment: int
    """Position of the OBX among the message's OBX segments, 1-based."""


@dataclass(frozen=True)
class Oru:
    """What an ORU^R01 says: whose readings, the readings, and what could not be read."""

    patient: list[Identifier]
    observations: list[Observation]
    faults: list[Fault]
    skipped: int
    """Rows deliberately not stored: containment rows, unknown metrics, no-value results and
    readings superseded by a preferred source at the same instant."""


# OBX-11 (HL7 table 0085) results that hold no reading: X cannot be obtained, D deleted, W posted
# in error, N not asked, I pending, O order detail only.
_NOT_A_RESULT = frozenset("XDWNIO")

# IEEE 11073-20601 FLOAT special values (HL7 PHD IG, "Mder FLOATs and SFLOATs"): mantissa 0x7FFFFF
# NaN, 0x7FFFFE +INF, 0x800000 NRes (not at this resolution), 0x800001 reserved, 0x800002 -INF.
# Gateways that print the 24-bit mantissa write them unsigned or signed. The SFLOAT specials
# (2046 to 2050) are not markers here: they are also real values (2047 g is a newborn's weight).
_NO_VALUE = frozenset(
    {8_388_606, 8_388_607, 8_388_608, 8_388_609, 8_388_610, -8_388_606, -8_388_607, -8_388_608}
)
_NO_VALUE_TEXT = frozenset({"nan", "nres", "inf", "+inf", "-inf", "infinity", "-infinity"})
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


@dataclass(frozen=True)
class _Candidate:
    observation: Observation
    rank: int


class _Group:
    """The OBR an OBX belongs to, and the equipment its MDS rows named."""

    def __init__(self, obr: Segment | None) -> None:
        self.obr = obr
        self.mds: dict[int, str] = {}
        self.latest: str | None = None


def parse_oru(header: Header, message: Message, *, default_tz: tzinfo | None = None) -> Oru:
    """Read the readings of an ORU^R01; times without offset are in `default_tz` (else UTC)."""
    if (header.message_type, header.trigger) != ("ORU", "R01"):
        fault = Fault("MSH", 1, 9, None, "200", "only ORU^R01 is read as device data")
        return Oru([], [], [fault], 0)
    pid = message.first("PID")
    patient = identifiers(pid) if pid else []
    faults: dict[Fault, None] = {}
    candidates: list[_Candidate] = []
    skipped = 0
    group = _Group(None)
    for segment in message.segments:
        if segment.name == "OBR":
            group = _Group(segment)
        elif segment.name == "OBX":
            found = _read(segment, group, message, default_tz)
            if isinstance(found, Fault):
                faults[found] = None
            elif found is None:
                skipped += 1
            else:
                candidates.append(found)
    observations = _preferred(candidates)
    skipped += len(candidates) - len(observations)
    return Oru(patient, observations, list(faults), skipped)


def _read(
    obx: Segment, group: _Group, message: Message, default_tz: tzinfo | None
) -> _Candidate | Fault | None:
    """Read one OBX: a reading, a fault, or None for a row that is not stored."""
    sub_id = _sub_id(obx.value(4))
    own_equipment = obx.value(18, 1).strip() or None
    if obx.is_empty(5):
        # No value: a containment row, or a metric the device could not measure ("?" on screen,
        # Philips Efficia; status X). An MDS row (n.0.0.0) names the equipment of its metrics.
        code, text = obx.value(3, 1), obx.value(3, 2)
        mds = not any(sub_id[1:]) if sub_id is not None else mdc.is_device(code, text)
        if own_equipment and mds:
            if sub_id is not None:
                group.mds[sub_id[0]] = own_equipment
            group.latest = own_equipment
        return None
    metric = mdc.metric(obx.value(3, 1), obx.value(3, 2), obx.value(3, 3))
    if metric is None or obx.value(11, 1).strip().upper() in _NOT_A_RESULT:
        return None
    number = _number(obx)
    if number is None or isinstance(number, Fault):
        return number
    unit = _unit(obx, metric.type)
    if isinstance(unit, Fault):
        return unit
    at = _time(obx, group.obr, message.segments[0], default_tz)
    if isinstance(at, Fault):
        return at
    value = to_catalogue_unit(metric.type, number, unit)
    if value is None:
        text = f"OBX-6 unit {unit} cannot be converted for {metric.type}"
        return Fault("OBX", obx.sequence, 6, None, "103", text)
    if not math.isfinite(value):
        return Fault("OBX", obx.sequence, 5, None, "102", "OBX-5 is out of numeric range")
    if own_equipment is None:
        own_equipment = (
            group.mds.get(sub_id[0]) if sub_id is not None and group.mds else group.latest
        )
    reading = Observation(metric.type, value, at, own_equipment, obx.sequence)
    return _Candidate(reading, metric.rank)


def _number(obx: Segment) -> float | Fault | None:
    """Read OBX-5 as a number; None for an 11073 no-value marker."""
    value_type = obx.value(2, 1).strip().upper()
    text = obx.value(5, 1).strip()
    if value_type == "SN":
        # Structured numeric: comparator^number^separator^number. Only an exact single number
        # ("^98" or "=^98") is a reading; a bound (">^200") or a ratio is not one value.
        if obx.value(5, 1).strip() not in ("", "=") or obx.value(5, 3) or obx.value(5, 4):
            return Fault("OBX", obx.sequence, 5, None, "102", "OBX-5 is not a single value")
        text = obx.value(5, 2).strip()
    elif value_type not in ("NM", ""):
        return Fault("OBX", obx.sequence, 2, None, "102", "OBX-2 is not a numeric value type")
    elif obx.components(5) > 1 or obx.repetitions(5) > 1:
        return Fault("OBX", obx.sequence, 5, None, "102", "OBX-5 is not a number")
    if text.lower() in _NO_VALUE_TEXT:
        return None
    if not _NUMBER.fullmatch(text):
        return Fault("OBX", obx.sequence, 5, None, "102", "OBX-5 is not a number")
    number = float(text)
    if not math.isfinite(number):
        return Fault("OBX", obx.sequence, 5, None, "102", "OBX-5 is out of numeric range")
    if number in _NO_VALUE:
        return None
    return number


def _unit(obx: Segment, kind: str) -> str | Fault:
    """Read OBX-6 as a UCUM unit."""
    identifier, text, system = (obx.value(6, i).strip() for i in (1, 2, 3))
    if not identifier and not text:
        return Fault("OBX", obx.sequence, 6, None, "101", f"OBX-6 unit is missing for {kind}")
    unit = mdc.ucum(identifier, text, system)
    if unit is None:
        return Fault("OBX", obx.sequence, 6, 1, "103", "OBX-6 unit is not a known unit")
    return unit


def _time(
    obx: Segment, obr: Segment | None, msh: Segment, default_tz: tzinfo | None
) -> datetime | Fault:
    """Find when a reading was taken: OBX-14, else OBR-7, else MSH-7."""
    for segment, field in ((obx, 14), (obr, 7), (msh, 7)):
        text = segment.value(field, 1).strip() if segment else ""
        if text and segment:
            try:
                return parse_time(text, default_tz)
            except ValueError:
                name = segment.name
                reason = f"{name}-{field} is not an HL7 date/time"
                return Fault(name, segment.sequence, field, 1, "102", reason)
    return Fault("OBX", obx.sequence, 14, None, "101", "no time in OBX-14, OBR-7 or MSH-7")


def _sub_id(text: str) -> tuple[int, ...] | None:
    """Read OBX-4 as MDS.VMD.CHAN.METRIC numbers; None when it is not dotted numbers."""
    parts = text.strip().split(".")
    if not all(p.isascii() and p.isdigit() and len(p) <= 9 for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _preferred(candidates: list[_Candidate]) -> list[Observation]:
    """Keep one reading per type, instant and equipment: the best ranked, then the first."""
    best: dict[tuple[str, datetime, str | None], _Candidate] = {}
    for candidate in candidates:
        reading = candidate.observation
        key = (reading.type, reading.at, reading.equipment)
        if key not in best or candidate.rank < best[key].rank:
            best[key] = candidate
    kept = {id(c) for c in best.values()}
    return [c.observation for c in candidates if id(c) in kept]
