"""The FHIR R4 read API at /fhir/r4, over HTTP, as an EHR reads it: every resource it answers
validates against the R4B models, every refusal is an OperationOutcome, and the REST API's
policy holds (organisation, care scope, audit)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from medcloud.interop.fhir_ids import device_metric_id, observation_id
from tests.integration.interop.fhir_checks import (
    fhir_json,
    ids,
    link,
    listening,
    outcome,
    serialized,
    valid,
)
from tests.support.cast import Cast
from tests.support.client import Api, eventually, now, reading

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
MRN = "urn:oid:2.16.840.1.113883.2.1.4.1"


async def get(api: Api, cast: Cast, who: str | None, path: str, **params: Any) -> Any:
    headers = cast.auth(who) if who else {}
    return await api.http.get(f"/fhir/r4/{path}", params=params, headers=headers)


def soon(seconds: float = 1) -> dt.datetime:
    """A whole second just ahead: after the oximeter was assigned to Peter, so the readings
    are his, and within the clock skew the gate accepts."""
    return now().replace(microsecond=0) + dt.timedelta(seconds=seconds)


async def peters_vitals(api: Api, cast: Cast, count: int = 5) -> list[dt.datetime]:
    """A heart rate and an SpO2 every ten seconds, `count` times, from Peter's oximeter."""
    start = soon()
    times = [start + dt.timedelta(seconds=10 * i) for i in range(count)]
    for i, at in enumerate(times):
        sent = await api.send(
            cast.devices["peters_oximeter"], reading(at, heart_rate=70 + i, spo2=95 + i % 3)
        )
        assert sent.status_code == 201, sent.text
    return times


def hr_id(cast: Cast, at: dt.datetime) -> str:
    return observation_id(device_id=cast.devices["peters_oximeter"]["id"], type="heart_rate", at=at)


async def follow(api: Api, cast: Cast, who: str, url: str) -> dict[str, Any]:
    response = await api.http.get(url, headers=cast.auth(who))
    return fhir_json(response)


async def test_the_capability_statement_is_public_and_says_export_is_synchronous(
    api: Api, cast: Cast
) -> None:
    statement = fhir_json(await get(api, cast, None, "metadata"))
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Patient", "Device", "DeviceMetric", "Observation", "Group"} <= resources.keys()
    [group_export] = resources["Group"]["operation"]
    assert "Synchronous" in group_export["documentation"]
    [patient_export] = resources["Patient"]["operation"]
    assert "Synchronous" in patient_export["documentation"]


async def test_a_patient_is_read_and_found_by_identifier_and_name(api: Api, cast: Cast) -> None:
    peter = cast.patients["peter"]["id"]
    patient = fhir_json(await get(api, cast, "carol_clinician", f"Patient/{peter}"))
    assert patient["identifier"] == [{"system": MRN, "value": "P-1001"}]
    assert patient["name"] == [{"family": "Family-P-1001", "given": ["Given-P-1001"]}]
    assert patient["birthDate"] == "1950-05-17"

    by_identifier = fhir_json(
        await get(api, cast, "carol_clinician", "Patient", identifier=f"{MRN}|P-1001")
    )
    assert ids(by_identifier) == [peter]
    assert by_identifier["total"] == 1
    # Mallory Health has a P-1001 too: never in St Mary's results.
    anywhere = await get(api, cast, "alice_admin", "Patient", identifier="P-1001")
    assert ids(fhir_json(anywhere)) == [peter]
    other_system = await get(api, cast, "alice_admin", "Patient", identifier="urn:x|P-1001")
    assert ids(fhir_json(other_system)) == []

    # Name: a prefix of the family or given name, in any case.
    assert ids(fhir_json(await get(api, cast, "carol_clinician", "Patient", name="fAMILY-p"))) == [
        peter
    ]
    assert ids(fhir_json(await get(api, cast, "carol_clinician", "Patient", name="given-p-1"))) == [
        peter
    ]
    assert ids(fhir_json(await get(api, cast, "carol_clinician", "Patient", name="amily"))) == []
    # Olive is in Oncology: out of carol's care scope, in alice's organisation-wide one.
    olive = cast.patients["olive"]["id"]
    assert ids(fhir_json(await get(api, cast, "carol_clinician", "Patient", name="family"))) == [
        peter
    ]
    assert set(ids(fhir_json(await get(api, cast, "alice_admin", "Patient", name="family")))) == {
        peter,
        olive,
    }
    by_id = await get(api, cast, "alice_admin", "Patient", _id=f"{peter},{olive}", _count="1")
    first = fhir_json(by_id)
    assert len(ids(first)) == 1 and "total" not in first
    second = await follow(api, cast, "alice_admin", link(first, "next") or "")
    assert set(ids(first) + ids(second)) == {peter, olive}
    assert link(second, "next") is None


async def test_observations_are_searched_by_patient_code_and_date_and_paged_to_the_end(
    api: Api, cast: Cast
) -> None:
    times = await peters_vitals(api, cast, count=5)
    peter = cast.patients["peter"]["id"]
    params = {
        "patient": f"Patient/{peter}",
        "code": f"{LOINC}|8867-4",
        "date": [f"ge{times[0].isoformat()}", f"lt{times[4].isoformat()}"],
        "_count": "3",
    }
    first = fhir_json(await get(api, cast, "carol_clinician", "Observation", **params))
    # Newest first by default; the date range leaves out the fifth minute.
    assert ids(first) == [hr_id(cast, at) for at in (times[3], times[2], times[1])]
    assert link(first, "previous") is None
    second = await follow(api, cast, "carol_clinician", link(first, "next") or "")
    assert ids(second) == [hr_id(cast, times[0])]
    assert link(second, "next") is None
    # The previous link goes back to the very same first page.
    back = await follow(api, cast, "carol_clinician", link(second, "previous") or "")
    assert ids(back) == ids(first)
    assert link(back, "previous") is None

    entry = first["entry"][0]["resource"]
    assert entry["subject"] == {"reference": f"Patient/{peter}"}
    assert entry["valueQuantity"]["value"] == 73
    assert entry["valueQuantity"]["code"] == "/min"
    assert entry["category"][0]["coding"][0]["code"] == "vital-signs"

    # Oldest first, two at a time, code without a system, followed to the end.
    seen: list[str] = []
    page = fhir_json(
        await get(
            api,
            cast,
            "carol_clinician",
            "Observation",
            subject=peter,
            code="8867-4",
            _sort="date",
            _count="2",
        )
    )
    while True:
        seen += ids(page)
        following = link(page, "next")
        if following is None:
            break
        page = await follow(api, cast, "carol_clinician", following)
    assert seen == [hr_id(cast, at) for at in times]

    # Codes are ORed; MDC codes work too (150456 is SpO2).
    both = fhir_json(
        await get(
            api,
            cast,
            "carol_clinician",
            "Observation",
            patient=peter,
            code=f"{LOINC}|8867-4,{MDC}|150456",
            date=f"eq{times[2].isoformat()}",
        )
    )
    assert len(ids(both)) == 2
    vital = await get(api, cast, "carol_clinician", "Observation", patient=peter, category="exam")
    assert ids(fhir_json(vital)) == []


async def test_a_blood_pressure_is_one_panel_observation_with_components(
    api: Api, cast: Cast
) -> None:
    oximeter = cast.devices["peters_oximeter"]
    at = soon()
    sent = await api.send(oximeter, reading(at, systolic_bp=128, diastolic_bp=82, mean_bp=97))
    assert sent.status_code == 201, sent.text
    peter = cast.patients["peter"]["id"]
    found = fhir_json(
        await get(api, cast, "nina_nurse", "Observation", patient=peter, code=f"{LOINC}|85354-9")
    )
    [panel] = [entry["resource"] for entry in found["entry"]]
    assert panel["id"] == observation_id(device_id=oximeter["id"], type="blood_pressure", at=at)
    components = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in panel["component"]
    }
    assert components == {"8480-6": 128, "8462-4": 82, "8478-0": 97}
    assert "http://hl7.org/fhir/StructureDefinition/bp" in panel["meta"]["profile"]
    # The parts are the panel's components, not Observations of their own.
    parts = await get(api, cast, "nina_nurse", "Observation", patient=peter, code="8480-6")
    assert ids(fhir_json(parts)) == []
    read = fhir_json(await get(api, cast, "nina_nurse", f"Observation/{panel['id']}"))
    assert read == panel


async def test_lastn_answers_the_newest_observations_of_each_code(api: Api, cast: Cast) -> None:
    times = await peters_vitals(api, cast, count=4)
    peter = cast.patients["peter"]["id"]
    newest = fhir_json(await get(api, cast, "carol_clinician", "Observation/$lastn", patient=peter))
    codes = sorted(entry["resource"]["code"]["coding"][-1]["display"] for entry in newest["entry"])
    assert codes == ["MDC_PULS_OXIM_SAT_O2", "MDC_PULS_RATE"]
    effective = {
        dt.datetime.fromisoformat(e["resource"]["effectiveDateTime"]) for e in newest["entry"]
    }
    assert effective == {times[3]}
    two = await get(
        api, cast, "carol_clinician", "Observation/$lastn", patient=peter, code="8867-4", max="2"
    )
    assert ids(fhir_json(two)) == [hr_id(cast, times[3]), hr_id(cast, times[2])]


async def test_devices_and_what_they_measure_are_read(api: Api, cast: Cast) -> None:
    await peters_vitals(api, cast, count=1)
    oximeter = cast.devices["peters_oximeter"]["id"]
    peter = cast.patients["peter"]["id"]
    device = fhir_json(await get(api, cast, "tess_technician", f"Device/{oximeter}"))
    assert device["serialNumber"] == "PO-1"
    assert device["patient"] == {"reference": f"Patient/{peter}"}
    assert device["status"] == "active"
    assert ids(fhir_json(await get(api, cast, "carol_clinician", "Device", patient=peter))) == [
        oximeter
    ]
    assert ids(fhir_json(await get(api, cast, "carol_clinician", "Device", identifier="PO-1"))) == [
        oximeter
    ]
    metrics = fhir_json(
        await get(api, cast, "tess_technician", "DeviceMetric", source=f"Device/{oximeter}")
    )
    expected = [device_metric_id(device_id=oximeter, type_code=t) for t in ("heart_rate", "spo2")]
    assert sorted(ids(metrics)) == sorted(expected)
    metric = fhir_json(await get(api, cast, "tess_technician", f"DeviceMetric/{expected[0]}"))
    assert metric["source"] == {"reference": f"Device/{oximeter}"}
    missing = device_metric_id(device_id=oximeter, type_code="temperature")
    outcome(await get(api, cast, "tess_technician", f"DeviceMetric/{missing}"), 404, "not-found")
    # Bob cares for Olive only: Peter's oximeter does not exist for him.
    outcome(await get(api, cast, "bob_other_ward", f"Device/{oximeter}"), 404, "not-found")


async def test_a_patients_export_streams_valid_ndjson_of_their_resources(
    api: Api, cast: Cast
) -> None:
    await peters_vitals(api, cast, count=3)
    peter = cast.patients["peter"]["id"]
    response = await get(api, cast, "carol_clinician", f"Patient/{peter}/$export")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    lines = [valid(json.loads(line)) for line in response.text.splitlines()]
    kinds = [line["resourceType"] for line in lines]
    assert kinds.count("Patient") == 1 and kinds.count("Device") == 1
    assert kinds.count("Observation") == 6
    only = await get(api, cast, "carol_clinician", f"Patient/{peter}/$export", _type="Observation")
    assert {json.loads(line)["resourceType"] for line in only.text.splitlines()} == {"Observation"}

    ward = await get(api, cast, "nina_nurse", f"Group/{cast.wards['cardiology']}/$export")
    assert ward.status_code == 200, ward.text
    patients = [
        line["id"]
        for line in map(json.loads, ward.text.splitlines())
        if line["resourceType"] == "Patient"
    ]
    assert patients == [peter]
    outcome(
        await get(api, cast, "bob_other_ward", f"Group/{cast.wards['cardiology']}/$export"),
        404,
        "not-found",
    )
    outcome(
        await get(api, cast, "carol_clinician", f"Patient/{peter}/$export", _type="Encounter"),
        400,
        "invalid",
    )


async def test_refusals_are_operation_outcomes(api: Api, cast: Cast) -> None:
    peter = cast.patients["peter"]["id"]
    outcome(await get(api, cast, "carol_clinician", "Patient/no-such-patient"), 404, "not-found")
    diagnostics = outcome(
        await get(api, cast, "carol_clinician", "Observation", patient=peter, colour="blue"),
        400,
        "invalid",
    )
    assert "colour" in diagnostics
    outcome(await get(api, cast, "carol_clinician", "Observation", code="8867-4"), 400, "invalid")
    outcome(
        await get(api, cast, "carol_clinician", "Observation", patient=peter, date="ap2026"),
        400,
        "invalid",
    )
    outcome(
        await get(api, cast, "carol_clinician", "Observation", patient=peter, _cursor="bogus"),
        400,
        "invalid",
    )
    outcome(await get(api, cast, "audrey_auditor", "Observation", patient=peter), 403, "forbidden")
    outcome(await get(api, cast, None, f"Patient/{peter}"), 401, "login")
    outcome(await get(api, cast, "carol_clinician", "Encounter"), 404, "not-found")


async def test_a_nurse_of_another_ward_and_another_organisation_see_none_of_peters_data(
    api: Api, cast: Cast
) -> None:
    times = await peters_vitals(api, cast, count=1)
    peter = cast.patients["peter"]["id"]
    observation = f"Observation/{hr_id(cast, times[0])}"
    fhir_json(await get(api, cast, "nina_nurse", observation))
    for who in ("bob_other_ward", "mallory_other_org", "mallory_clinician"):
        outcome(await get(api, cast, who, observation), 404, "not-found")
        outcome(await get(api, cast, who, "Observation", patient=peter), 404, "not-found")
        outcome(await get(api, cast, who, f"Patient/{peter}"), 404, "not-found")
        outcome(await get(api, cast, who, f"Patient/{peter}/$export"), 404, "not-found")
    theirs = fhir_json(await get(api, cast, "mallory_other_org", "Patient", identifier="P-1001"))
    assert ids(theirs) == [cast.patients["mallorys_patient"]["id"]]
    devices = fhir_json(await get(api, cast, "mallory_other_org", "Device"))
    assert ids(devices) == [cast.devices["mallorys_device"]["id"]]


async def test_fhir_reads_are_audited_without_values(api: Api, cast: Cast) -> None:
    await peters_vitals(api, cast, count=1)
    peter = cast.patients["peter"]["id"]
    fhir_json(await get(api, cast, "carol_clinician", "Observation", patient=peter))

    async def entries() -> list[dict[str, Any]]:
        response = await api.http.get(
            "/api/v1/audit", params={"patient_id": peter}, headers=cast.auth("alice_admin")
        )
        assert response.status_code == 200, response.text
        return [
            e
            for e in response.json()["items"]
            if e["action"] == "readings.read" and e["detail"].get("interface") == "fhir"
        ]

    [entry] = await eventually(entries)
    assert entry["actor_id"] == cast.user_ids["carol_clinician"]
    assert entry["detail"] == {"interface": "fhir", "count": 2}


@pytest.mark.timeout(120)
async def test_a_fhir_client_library_searches_pages_and_reads(api: Api, cast: Cast) -> None:
    times = await peters_vitals(api, cast, count=5)
    peter = cast.patients["peter"]["id"]
    async with listening(api) as base_url:
        client = AsyncFHIRClient(base_url, authorization=f"Bearer {cast.tokens['carol_clinician']}")
        patient = await client.resources("Patient").search(identifier=f"{MRN}|P-1001").get()
        assert patient.id == peter
        search = client.resources("Observation").search(patient=f"Patient/{peter}", code="8867-4")
        observations = await search.sort("date").limit(2).fetch_all()
        assert [o.id for o in observations] == [hr_id(cast, at) for at in times]
        for resource in [patient, *observations]:
            valid(serialized(resource))
        read = await client.reference("Observation", observations[0].id).to_resource()
        assert valid(serialized(read))["valueQuantity"]["value"] == 70
        with pytest.raises(ResourceNotFound):
            await client.reference("Patient", cast.patients["olive"]["id"]).to_resource()
