"""The FHIR mapping: every resource valid R4, every catalogue type coded, ids stable."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource
from hypothesis import given
from hypothesis import strategies as st

from medcloud.interop import fhir
from medcloud.interop.fhir import DeviceRecord, PatientRecord, ReadingRecord
from medcloud.platform.catalogue import CATALOGUE

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
STRUCTURE = "http://hl7.org/fhir/StructureDefinition/"
VITALS = f"{STRUCTURE}vitalsigns"
BASE = "https://medcloud.example/fhir/r4"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

ALICE_MONITOR = "3f2b8c1e-9d4a-4e6b-8c2f-1a7d5e9b0c34"
BOB_MONITOR = "c0ffee00-1234-4abc-9def-0123456789ab"
ALICE = "alice-patient"
NOON = datetime(2024, 3, 5, 12, 0, 0, 250_000, tzinfo=UTC)

# IEEE 11073-10101 numeric codes each catalogue type must carry (DK Core's
# dk-core-IEEEBasicObservation value set; glucose from the PHD IG examples).
MDC_NUMERIC = {
    "heart_rate": "149514",
    "spo2": "150456",
    "respiratory_rate": "151562",
    "temperature": "150364",
    "systolic_bp": "150021",
    "diastolic_bp": "150022",
    "mean_bp": "150023",
    "glucose": "160184",
    "weight": "188736",
}


def reading(
    type_code: str,
    value: float,
    *,
    at: datetime = NOON,
    device_id: str = ALICE_MONITOR,
    patient_id: str | None = ALICE,
) -> ReadingRecord:
    return ReadingRecord(type_code, value, at, patient_id, device_id)


def round_trip(resource: Resource) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(fhir.to_json(resource)))
    reparsed = type(resource).model_validate(document)
    assert fhir.to_json(reparsed) == document
    return document


def codings(concept: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for c in concept["coding"] if c["system"] == system]


def only(built: list[Observation]) -> dict[str, Any]:
    assert len(built) == 1
    return round_trip(built[0])


alice = PatientRecord(
    id=ALICE,
    identifier_system="urn:oid:2.16.840.1.113883.2.1.4.1",
    identifier_value="9434765919",
    family_name="Liddell",
    given_name="Alice",
    birth_date=date(1952, 5, 4),
    sex="female",
    organisation_id="org-st-bart",
    ward="ward-7",
)
alice_monitor = DeviceRecord(
    id=ALICE_MONITOR,
    serial_number="SN-0042",
    manufacturer="Acme Medical",
    model="VitalView 3",
    udi="(01)00844588003288(17)141120(10)7654321D(21)10987654d321",
    firmware_version="4.2.1",
    status="online",
    decommissioned=False,
    patient_id=ALICE,
    organisation_id="org-st-bart",
)


def test_a_patient_carries_identifier_name_birth_date_gender_and_organisation() -> None:
    document = round_trip(fhir.patient(alice))

    assert document["id"] == ALICE
    assert document["identifier"] == [{"system": alice.identifier_system, "value": "9434765919"}]
    assert document["name"] == [{"family": "Liddell", "given": ["Alice"]}]
    assert document["birthDate"] == "1952-05-04"
    assert document["gender"] == "female"
    assert document["managingOrganization"] == {"reference": "Organization/org-st-bart"}


def test_a_patient_without_given_name_birth_date_or_sex_leaves_them_out() -> None:
    record = replace(alice, given_name="", birth_date=None, sex=None)

    document = round_trip(fhir.patient(record))

    assert document["name"] == [{"family": "Liddell"}]
    assert "birthDate" not in document
    assert "gender" not in document


def test_it_refuses_a_sex_outside_administrative_gender() -> None:
    with pytest.raises(ValueError, match="AdministrativeGender"):
        fhir.patient(replace(alice, sex="F"))


def test_a_device_carries_serial_udi_model_firmware_patient_and_owner() -> None:
    document = round_trip(fhir.device(alice_monitor))

    assert document["id"] == ALICE_MONITOR
    assert document["identifier"][0]["value"] == "SN-0042"
    assert document["identifier"][0]["type"]["coding"][0]["code"] == "SNO"
    assert document["udiCarrier"] == [{"carrierHRF": alice_monitor.udi}]
    assert document["manufacturer"] == "Acme Medical"
    assert document["deviceName"] == [{"name": "VitalView 3", "type": "model-name"}]
    assert document["version"] == [{"type": {"text": "firmware"}, "value": "4.2.1"}]
    assert document["status"] == "active"
    assert document["patient"] == {"reference": f"Patient/{ALICE}"}
    assert document["owner"] == {"reference": "Organization/org-st-bart"}


def test_a_decommissioned_device_is_inactive_and_unassigned_one_has_no_patient() -> None:
    record = replace(
        alice_monitor, decommissioned=True, patient_id=None, udi=None, firmware_version=None
    )

    document = round_trip(fhir.device(record))

    assert document["status"] == "inactive"
    assert "patient" not in document
    assert "udiCarrier" not in document
    assert "version" not in document


@pytest.mark.parametrize("type_code", sorted(CATALOGUE))
def test_a_device_metric_is_coded_with_its_unit_and_source(type_code: str) -> None:
    metric = fhir.device_metric(device_id=ALICE_MONITOR, type_code=type_code, status="offline")
    document = round_trip(metric)

    assert CATALOGUE[type_code].loinc in codings(document["type"], LOINC)
    assert codings(document["type"], MDC) == [c for c in [MDC_NUMERIC.get(type_code)] if c]
    assert document["unit"]["coding"] == [{"system": UCUM, "code": CATALOGUE[type_code].unit}]
    assert document["source"] == {"reference": f"Device/{ALICE_MONITOR}"}
    assert document["category"] == "measurement"
    assert document["operationalStatus"] == "off"
    assert fhir.parse_device_metric_id(document["id"]) == (ALICE_MONITOR, type_code)
    assert metric.id == fhir.device_metric(device_id=ALICE_MONITOR, type_code=type_code).id


@pytest.mark.parametrize("type_code", sorted(CATALOGUE))
def test_each_catalogue_type_yields_loinc_ucum_and_its_mdc_code(type_code: str) -> None:
    kind = CATALOGUE[type_code]

    document = only(fhir.observations([reading(type_code, kind.minimum)]))

    assert kind.loinc in codings(document["code"], LOINC)
    assert (kind.mdc is None) == (type_code not in MDC_NUMERIC)
    assert codings(document["code"], MDC) == ([MDC_NUMERIC[type_code]] if kind.mdc else [])
    assert document["valueQuantity"] == {
        "value": kind.minimum,
        "unit": kind.unit,
        "system": UCUM,
        "code": kind.unit,
    }
    assert document["status"] == "final"
    assert document["subject"] == {"reference": f"Patient/{ALICE}"}
    assert document["device"] == {"reference": f"Device/{ALICE_MONITOR}"}
    assert document["effectiveDateTime"] == "2024-03-05T12:00:00.250000Z"


@pytest.mark.parametrize(
    ("type_code", "unit"),
    [("temperature", "Cel"), ("spo2", "%"), ("heart_rate", "/min"), ("weight", "kg")],
)
def test_units_are_ucum_codes(type_code: str, unit: str) -> None:
    document = only(fhir.observations([reading(type_code, 37.2)]))
    assert document["valueQuantity"]["code"] == unit
    assert document["valueQuantity"]["system"] == UCUM


@pytest.mark.parametrize(
    ("type_code", "profile"),
    [("heart_rate", "heartrate"), ("spo2", "oxygensat"), ("respiratory_rate", "resprate")]
    + [("temperature", "bodytemp"), ("weight", "bodyweight")],
)
def test_vital_signs_claim_the_generic_and_their_specific_profile(
    type_code: str, profile: str
) -> None:
    document = only(fhir.observations([reading(type_code, 50)]))

    assert document["meta"]["profile"] == [VITALS, f"{STRUCTURE}{profile}"]
    assert codings(document["category"][0], CATEGORY) == ["vital-signs"]


def test_oxygen_saturation_carries_the_loinc_code_the_oxygensat_profile_fixes() -> None:
    document = only(fhir.observations([reading("spo2", 96)]))
    assert codings(document["code"], LOINC) == ["2708-6", "59408-5"]


@pytest.mark.parametrize(
    ("type_code", "category"),
    [("consciousness", "exam"), ("glucose", "laboratory"), ("oxygen_flow", "vital-signs")],
)
def test_charted_and_laboratory_types_get_their_own_category(type_code: str, category: str) -> None:
    document = only(fhir.observations([reading(type_code, 1)]))

    assert codings(document["category"][0], CATEGORY) == [category]
    profiles = document.get("meta", {}).get("profile", [])
    assert (VITALS in profiles) == (category == "vital-signs")


def test_a_reading_without_patient_has_no_subject_and_claims_no_profile() -> None:
    document = only(fhir.observations([reading("heart_rate", 61, patient_id=None)]))

    assert "subject" not in document
    assert "meta" not in document


def test_systolic_diastolic_and_mean_at_one_instant_become_one_panel() -> None:
    built = fhir.observations(
        [reading("mean_bp", 93), reading("diastolic_bp", 80), reading("systolic_bp", 120)]
    )

    document = only(built)
    assert codings(document["code"], LOINC) == ["85354-9"]
    assert codings(document["code"], MDC) == ["150020"]
    assert "valueQuantity" not in document
    assert [
        (codings(c["code"], LOINC), codings(c["code"], MDC), c["valueQuantity"]["value"])
        for c in document["component"]
    ] == [(["8480-6"], ["150021"], 120), (["8462-4"], ["150022"], 80), (["8478-0"], ["150023"], 93)]
    assert all(c["valueQuantity"]["code"] == "mm[Hg]" for c in document["component"])
    assert document["meta"]["profile"] == [VITALS, "http://hl7.org/fhir/StructureDefinition/bp"]
    assert fhir.parse_observation_id(document["id"]) == (ALICE_MONITOR, "blood_pressure", NOON)


def test_a_panel_without_mean_has_two_components() -> None:
    document = only(fhir.observations([reading("systolic_bp", 118), reading("diastolic_bp", 76)]))
    assert [codings(c["code"], LOINC) for c in document["component"]] == [["8480-6"], ["8462-4"]]


def test_a_lone_systolic_stays_its_own_observation() -> None:
    document = only(fhir.observations([reading("systolic_bp", 140)]))

    assert codings(document["code"], LOINC) == ["8480-6"]
    assert document["valueQuantity"]["value"] == 140
    assert "component" not in document


def test_pressures_at_different_instants_or_devices_are_not_merged() -> None:
    later = NOON + timedelta(seconds=1)
    built = fhir.observations(
        [
            reading("systolic_bp", 120),
            reading("diastolic_bp", 80, at=later),
            reading("diastolic_bp", 82, device_id=BOB_MONITOR),
        ]
    )

    assert [codings(round_trip(o)["code"], LOINC) for o in built] == [
        ["8480-6"],
        ["8462-4"],
        ["8462-4"],
    ]
    assert len({o.id for o in built}) == 3


def test_other_readings_keep_their_order_around_a_panel() -> None:
    types = ("heart_rate", "systolic_bp", "spo2", "diastolic_bp")
    built = fhir.observations([reading(type_code, 90) for type_code in types])

    assert [fhir.parse_observation_id(o.id or "") for o in built] == [
        (ALICE_MONITOR, "heart_rate", NOON),
        (ALICE_MONITOR, fhir.BLOOD_PRESSURE_PANEL, NOON),
        (ALICE_MONITOR, "spo2", NOON),
    ]


def test_a_reading_keeps_its_id_in_any_zone_and_a_repeat_keeps_the_last_value() -> None:
    paris = NOON.astimezone(timezone(timedelta(hours=1)))

    first = only(fhir.observations([reading("heart_rate", 70)]))
    again = only(
        fhir.observations([reading("heart_rate", 70), reading("heart_rate", 71, at=paris)])
    )

    assert first["id"] == again["id"]
    assert first["id"] == fhir.observation_id(device_id=ALICE_MONITOR, type="heart_rate", at=NOON)
    assert again["effectiveDateTime"] == "2024-03-05T12:00:00.250000Z"
    assert again["valueQuantity"]["value"] == 71


def test_an_observation_id_is_fhir_safe_and_decodes_to_its_series_key() -> None:
    at = datetime(2024, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    value = fhir.observation_id(device_id=ALICE_MONITOR, type="respiratory_rate", at=at)

    assert FHIR_ID.fullmatch(value)
    assert fhir.parse_observation_id(value) == (ALICE_MONITOR, "respiratory_rate", at)


def test_ids_sort_as_their_instants_do() -> None:
    instants = [NOON + timedelta(microseconds=n) for n in (0, 1, 10**6, 10**12)]
    ids = [fhir.observation_id(device_id=ALICE_MONITOR, type="spo2", at=t) for t in instants]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("device_id", "type_code"),
    [
        ("monitor-7", "heart_rate"),  # not a UUID
        (ALICE_MONITOR.upper(), "heart_rate"),  # not the canonical spelling
        (ALICE_MONITOR, "a_type_code_too_long_to_fit_in_sixty_four"),
        (ALICE_MONITOR, "Heart.Rate"),
    ],
)
def test_keys_that_cannot_be_encoded_get_a_stable_hashed_id(device_id: str, type_code: str) -> None:
    value = fhir.observation_id(device_id=device_id, type=type_code, at=NOON)

    assert FHIR_ID.fullmatch(value)
    assert value.startswith("h.")
    assert value == fhir.observation_id(device_id=device_id, type=type_code, at=NOON)
    assert fhir.parse_observation_id(value) is None
    metric = fhir.device_metric_id(device_id=device_id, type_code=type_code)
    assert fhir.parse_device_metric_id(metric) is None


@pytest.mark.parametrize(
    "value",
    ["", "not-an-id", "h.abc", f"{'0' * 32}.spo2.zzzzzzzzzzzz", f"{'0' * 32}.spo2.0000000000"],
)
def test_parsing_a_foreign_id_gives_none(value: str) -> None:
    assert fhir.parse_observation_id(value) is None


def test_it_refuses_a_naive_timestamp() -> None:
    with pytest.raises(ValueError, match="time zone"):
        fhir.observations([reading("heart_rate", 70, at=datetime(2024, 1, 1))])


def test_it_refuses_a_value_that_is_not_a_decimal() -> None:
    with pytest.raises(ValueError, match="decimal"):
        fhir.observations([reading("heart_rate", math.nan)])


@given(
    st.lists(
        st.builds(
            ReadingRecord,
            type=st.sampled_from(sorted(CATALOGUE)),
            value=st.floats(allow_nan=False, allow_infinity=False),
            at=st.datetimes(timezones=st.just(UTC)),
            patient_id=st.none() | st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True),
            device_id=st.uuids().map(str),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_finite_readings_make_valid_observations(readings: list[ReadingRecord]) -> None:
    built = fhir.observations(readings)

    ids = [o.id or "" for o in built]
    assert len(set(ids)) == len(ids)
    for observation in built:
        document = round_trip(observation)
        assert FHIR_ID.fullmatch(document["id"])
        assert fhir.parse_observation_id(document["id"]) is not None
    for r in readings:
        assert fhir.parse_observation_id(
            fhir.observation_id(device_id=r.device_id, type=r.type, at=r.at)
        ) == (r.device_id, r.type, r.at)


def test_a_searchset_links_pages_and_gives_absolute_full_urls() -> None:
    page = fhir.observations([reading("heart_rate", 70), reading("spo2", 97)])

    bundle = fhir.searchset(
        page,
        base_url=BASE + "/",
        total=12,
        self_url=f"{BASE}/Observation?patient=alice&_count=2",
        next_url=f"{BASE}/Observation?patient=alice&_count=2&_page=2",
    )
    document = round_trip(bundle)

    assert document["type"] == "searchset"
    assert document["total"] == 12
    assert [link["relation"] for link in document["link"]] == ["self", "next"]
    assert [e["fullUrl"] for e in document["entry"]] == [f"{BASE}/Observation/{o.id}" for o in page]
    assert {e["search"]["mode"] for e in document["entry"]} == {"match"}


def test_an_empty_searchset_has_no_entries_and_a_previous_link() -> None:
    bundle = fhir.searchset(
        [],
        base_url="https://x/fhir/r4",
        total=0,
        self_url="https://x/fhir/r4/Device?_page=3",
        next_url=None,
        previous_url="https://x/fhir/r4/Device?_page=2",
    )
    document = round_trip(bundle)
    assert "entry" not in document
    assert [link["relation"] for link in document["link"]] == ["self", "previous"]


def test_a_transaction_puts_every_resource_at_its_id() -> None:
    resources: list[Resource] = [
        fhir.patient(alice),
        fhir.device(alice_monitor),
        *fhir.observations([reading("heart_rate", 70)]),
    ]

    document = round_trip(fhir.transaction(resources))

    assert document["type"] == "transaction"
    assert [e["request"] for e in document["entry"]] == [
        {"method": "PUT", "url": f"Patient/{ALICE}"},
        {"method": "PUT", "url": f"Device/{ALICE_MONITOR}"},
        {"method": "PUT", "url": f"Observation/{resources[2].id}"},
    ]


def test_an_operation_outcome_carries_one_issue() -> None:
    outcome = fhir.operation_outcome(
        severity="error", code="not-found", diagnostics="x", expression=["Observation.id"]
    )

    (issue,) = round_trip(outcome)["issue"]
    assert (issue["severity"], issue["code"], issue["diagnostics"]) == ("error", "not-found", "x")
    assert issue["expression"] == ["Observation.id"]


def test_an_operation_outcome_refuses_an_issue_type_outside_the_value_set() -> None:
    with pytest.raises(ValueError, match="IssueType"):
        fhir.operation_outcome(severity="error", code="nope", diagnostics="x")  # type: ignore[arg-type]


def test_the_capability_statement_lists_resources_searches_and_operations() -> None:
    statement = fhir.capability_statement(base_url=BASE, software_version="1.4.0", now=NOON)

    document = round_trip(statement)
    assert document["fhirVersion"] == "4.0.1"
    assert "json" in document["format"]
    assert document["software"] == {"name": "medcloud", "version": "1.4.0"}
    assert document["implementation"]["url"] == BASE
    rest = document["rest"][0]
    assert rest["mode"] == "server"
    assert rest["security"]["service"][0]["coding"][0]["code"] == "OAuth"
    resources = {r["type"]: r for r in rest["resource"]}
    searches = {name: {p["name"] for p in r["searchParam"]} for name, r in resources.items()}
    assert searches == {
        "Patient": set("_id identifier name".split()),
        "Device": set("_id identifier patient".split()),
        "DeviceMetric": set("_id source".split()),
        "Observation": set("_id patient subject code date category device _count _sort".split()),
    }
    for resource in resources.values():
        assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
    assert resources["Observation"]["operation"] == [
        {"name": "lastn", "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"}
    ]
    assert resources["Patient"]["operation"][0]["name"] == "export"


def test_ndjson_has_one_parseable_resource_a_line() -> None:
    resources: list[Resource] = [fhir.patient(alice), fhir.device(alice_monitor)]

    lines = fhir.ndjson(resources).decode().splitlines()

    assert len(lines) == 2
    assert Patient.model_validate_json(lines[0]).id == ALICE
    assert Device.model_validate_json(lines[1]).id == ALICE_MONITOR
    assert fhir.ndjson(resources).endswith(b"\n")
