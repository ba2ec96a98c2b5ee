"""Every message in messages/ is read as expected: shapes real monitors, gateways and ADT send.

messages/README.md says where each shape comes from. A message added there without a row here
fails `test_every_message_has_an_expected_result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path

import pytest

from medcloud.interop.adt import parse_adt
from medcloud.interop.hl7v2 import parse
from medcloud.interop.pcd01 import parse_oru

MESSAGES = Path(__file__).parent / "messages"


@dataclass(frozen=True)
class Reading:
    type: str
    sent: float
    value: float
    at: datetime
    equipment: str | None
    segment: int


@dataclass(frozen=True)
class Expected:
    patient: list[str]
    readings: list[Reading]
    skipped: int
    faults: list[tuple[str, int, int | None, str]] = field(default_factory=list)
    default_tz: tzinfo | None = None


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


B40 = "080019FFFE0B4020"
B40_TIME = at(2013, 1, 22, 13, 41)
NIST = "080019FFFE3ED02D172.16.172.135"
NIST_TIME = at(2011, 6, 2, 4, 58, 42)
GATEWAY = at(2026, 9, 12, 6, 30)
NIBP = at(2026, 9, 12, 6, 25, 30)
COMEN = at(2025, 6, 9, 17, 51, 27)
CDOG = at(2015, 1, 18, 14, 30)
EFFICIA = at(2014, 5, 10, 10, 45)
EFFICIA_NBP = at(2014, 5, 10, 10, 35)
VS900_NIBP = at(2019, 12, 6, 11, 10, 16)

ORU: dict[str, Expected] = {
    "ge_b40_periodic.hl7": Expected(
        patient=["HED12"],
        readings=[
            Reading("heart_rate", 80, 80, B40_TIME, B40, 3),
            Reading("spo2", 100, 100, B40_TIME, B40, 13),
            Reading("respiratory_rate", 18, 18, B40_TIME, B40, 15),
            Reading("temperature", 37.1, 37.1, B40_TIME, B40, 19),
        ],
        # 8 containment rows, PVC rate and 3 arterial pressures, and the invasive pulse rate,
        # oximeter pulse rate, ECG-derived respiration and second probe superseded.
        skipped=16,
    ),
    "ge_b40_lf_escapes.hl7": Expected(
        patient=["HED12", "B|40/7"],
        readings=[
            Reading("heart_rate", 80, 80, B40_TIME, B40, 3),
            Reading("spo2", 97, 97, B40_TIME, B40, 5),
        ],
        skipped=3,
    ),
    "ge_b40_faults.hl7": Expected(
        patient=["HED12"],
        readings=[Reading("respiratory_rate", 18, 18, B40_TIME, B40, 4)],
        skipped=1,
        faults=[
            ("OBX", 2, 14, "102"),
            ("OBX", 3, 5, "102"),
            ("OBX", 5, 6, "103"),
            ("OBX", 6, 6, "103"),
        ],
    ),
    "nist_acme_gateway_nibp.hl7": Expected(
        patient=["HO2009001"],
        readings=[
            Reading("systolic_bp", 120, 120, NIST_TIME, NIST, 4),
            Reading("diastolic_bp", 80, 80, NIST_TIME, NIST, 5),
            Reading("mean_bp", 93, 93, NIST_TIME, NIST, 6),
            Reading("heart_rate", 63, 63, NIST_TIME, NIST, 7),
        ],
        skipped=3,
    ),
    "ihe_pcd_bpm_mds.hl7": Expected(
        patient=["1"],
        readings=[
            Reading("systolic_bp", 120, 120, at(2009, 8, 13, 9, 57, 15), "0123456789ABCDEF", 4),
            Reading("diastolic_bp", 80, 80, at(2009, 8, 13, 9, 57, 15), "0123456789ABCDEF", 5),
            Reading("mean_bp", 100, 100, at(2009, 8, 13, 9, 57, 15), "0123456789ABCDEF", 6),
        ],
        skipped=4,
    ),
    "mindray_egateway_offsets.hl7": Expected(
        patient=[],
        readings=[
            Reading("spo2", 98, 98, GATEWAY, "000F14049B507238", 1),
            Reading("respiratory_rate", 17, 17, GATEWAY, None, 5),
            Reading("heart_rate", 66, 66, GATEWAY, None, 13),
            Reading("systolic_bp", 147, 147, NIBP, None, 14),
            Reading("mean_bp", 109, 109, NIBP, None, 15),
            Reading("diastolic_bp", 90, 90, NIBP, None, 16),
        ],
        # Perfusion index, 7 arrhythmia counters, and the oximeter pulse and pleth respiration
        # superseded by the ECG and impedance rates.
        skipped=10,
    ),
    "mindray_vs900_sentinels.hl7": Expected(
        patient=[],
        readings=[
            Reading("mean_bp", 109, 109, VS900_NIBP, None, 5),
            Reading("diastolic_bp", 90, 90, VS900_NIBP, None, 6),
            Reading("temperature", 35.1, 35.1, at(2019, 12, 6, 11, 34, 15), None, 7),
        ],
        # NaN and NRes markers, perfusion index, a systolic with status X, a "NaN" temperature.
        skipped=5,
    ),
    "phd_gateway_multi_obr.hl7": Expected(
        patient=["SSN3456789"],
        readings=[
            Reading("systolic_bp", 140.5, 140.5, CDOG, "0123456789ABCDEF", 3),
            Reading("diastolic_bp", 95, 95, CDOG, "0123456789ABCDEF", 4),
            Reading("heart_rate", 75.5, 75.5, CDOG, "0123456789ABCDEF", 5),
            Reading("temperature", 98.6, 37.0, at(2015, 1, 18, 13, 45), "1123456789ABCDEF", 7),
            Reading("glucose", 90, 90 / 18.016, CDOG, "2123456789ABCDEF", 9),
            Reading(
                "weight",
                165.4,
                165.4 * 0.453_592_37,
                datetime(2015, 1, 18, 20, 0, 0, 500_000, tzinfo=UTC),
                "3123456789ABCDEF",
                11,
            ),
        ],
        skipped=5,
    ),
    "comen_refid_numeric.hl7": Expected(
        patient=["10006"],
        readings=[
            Reading("spo2", 97, 97, COMEN, None, 1),
            Reading("heart_rate", 59, 59, COMEN, None, 3),
            Reading("respiratory_rate", 20, 20, COMEN, None, 6),
            Reading("temperature", 37, 37, COMEN, None, 7),
            Reading("systolic_bp", 120, 120, COMEN, None, 8),
            Reading("diastolic_bp", 80, 80, COMEN, None, 9),
            Reading("mean_bp", 90, 90, COMEN, None, 10),
        ],
        skipped=6,
    ),
    "philips_efficia_mdil.hl7": Expected(
        patient=["MRN0012345"],
        readings=[
            Reading("spo2", 98, 98, EFFICIA, None, 1),
            Reading("systolic_bp", 122, 122, EFFICIA_NBP, None, 2),
            Reading("diastolic_bp", 85, 85, EFFICIA_NBP, None, 3),
            Reading("mean_bp", 98, 98, EFFICIA_NBP, None, 4),
            Reading("heart_rate", 80, 80, EFFICIA, None, 5),
        ],
        # Resp under a term not stored, a vendor-private temperature, an HR with status X.
        skipped=3,
        default_tz=timezone(timedelta(hours=2)),
    ),
}


@dataclass(frozen=True)
class Patient:
    event: str
    identifiers: list[tuple[str, str | None, str | None]]
    family_name: str | None
    given_name: str | None
    birth_date: date | None
    sex: str
    location: tuple[str | None, str | None, str | None]
    faults: list[tuple[str, int, int | None, str]]


ADT = {
    "adt_a01_admit.hl7": Patient(
        event="A01",
        identifiers=[("PATID1234", "ADT1", "MR"), ("123456789", "USSSA", "SS")],
        family_name="EVERYMAN",
        given_name="ADAM",
        birth_date=date(1961, 6, 15),
        sex="male",
        location=("2000", "2012", "01"),
        faults=[],
    ),
    "adt_a04_register.hl7": Patient(
        event="A04",
        identifiers=[("191919", "GENHOS", "MR"), ("371-66-9256", "USSSA", "SS")],
        family_name="MASSIE",
        given_name="JAMES",
        birth_date=date(1956, 1, 29),
        sex="male",
        location=("O/R", None, None),
        faults=[],
    ),
    "adt_a08_missing_id.hl7": Patient(
        event="A08",
        identifiers=[],
        family_name="SMITH&JONES",
        given_name="ANNE^MARIE",
        birth_date=date(1991, 1, 20),
        sex="unknown",
        location=("ICU", "3B", "2"),
        faults=[("PID", 1, 3, "101")],
    ),
}


def test_every_message_has_an_expected_result() -> None:
    assert sorted(p.name for p in MESSAGES.glob("*.hl7")) == sorted([*ORU, *ADT])


def test_every_message_is_listed_in_the_readme() -> None:
    readme = (MESSAGES / "README.md").read_text()
    assert [name for name in [*ORU, *ADT] if name not in readme] == []


@pytest.mark.parametrize("name", sorted(ORU))
def test_it_reads_the_readings_of(name: str) -> None:
    expected = ORU[name]
    header, message = parse((MESSAGES / name).read_bytes())

    oru = parse_oru(header, message, default_tz=expected.default_tz)

    assert [i.value for i in oru.patient] == expected.patient
    got = [(o.type, o.at, o.equipment, o.segment) for o in oru.observations]
    assert got == [(r.type, r.at, r.equipment, r.segment) for r in expected.readings]
    for observation, reading in zip(oru.observations, expected.readings, strict=True):
        assert observation.value == pytest.approx(reading.value)
    assert oru.skipped == expected.skipped
    assert [(f.segment, f.sequence, f.field, f.code) for f in oru.faults] == expected.faults


@pytest.mark.parametrize("name", sorted(ORU))
def test_the_table_names_the_values_each_message_sends(name: str) -> None:
    _, message = parse((MESSAGES / name).read_bytes())

    sent = [float(message.all("OBX")[r.segment - 1].value(5)) for r in ORU[name].readings]

    assert sent == [r.sent for r in ORU[name].readings]


@pytest.mark.parametrize("name", sorted(ADT))
def test_it_reads_the_patient_of(name: str) -> None:
    expected = ADT[name]
    header, message = parse((MESSAGES / name).read_bytes())

    admission = parse_adt(header, message)

    assert admission.event == expected.event
    found = [(i.value, i.authority, i.type_code) for i in admission.identifiers]
    assert found == expected.identifiers
    assert (admission.family_name, admission.given_name) == (
        expected.family_name,
        expected.given_name,
    )
    assert (admission.birth_date, admission.sex) == (expected.birth_date, expected.sex)
    assert (admission.ward, admission.room, admission.bed) == expected.location
    faults = [(f.segment, f.sequence, f.field, f.code) for f in admission.faults]
    assert faults == expected.faults


def test_a_sender_ending_segments_with_newlines_is_read_like_one_ending_them_with_cr() -> None:
    raw = (MESSAGES / "ge_b40_lf_escapes.hl7").read_bytes()
    assert b"\r" not in raw

    header, message = parse(raw)

    assert [s.name for s in message.segments][:5] == ["MSH", "PID", "PV1", "OBR", "NTE"]
    note = message.first("NTE")
    assert note is not None
    assert note.value(3) == "Probe re-sited | lead II\ncheck ^ skin~done \\ ok"
    assert header.control_id == "004097134536"
