"""HL7 v2 → FHIR: every conformance message becomes a valid transaction of the resources it
names, with the FHIR API's codes, and the same ids every time it is converted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from medcloud.functions.hl7_to_fhir import convert
from medcloud.interop.conversion import Untranslatable, to_fhir
from medcloud.interop.fhir import MDC, UCUM, to_json
from medcloud.platform.catalogue import CATALOGUE

MESSAGES = Path(__file__).parent / "messages"
LOINC = "http://loinc.org"
# Faults, and a monitor that names no equipment anywhere (no OBX-18, no EUI-64 in MSH-3): its
# readings cannot be told from another monitor's behind the same gateway, so they are refused.
REFUSED = {"ge_b40_faults.hl7", "adt_a08_missing_id.hl7", "comen_refid_numeric.hl7"}
READABLE = sorted(p.name for p in MESSAGES.glob("*.hl7") if p.name not in REFUSED)


def converted(name: str) -> dict[str, Any]:
    bundle = to_fhir(
        (MESSAGES / name).read_bytes(),
        identifier_system="urn:oid:1.2.3.4",
        organisation_id="st-marys",
    ).bundle
    return to_json(bundle)


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def systems(concept: dict[str, Any]) -> set[str]:
    return {coding["system"] for coding in concept["coding"]}


@pytest.mark.parametrize("name", READABLE)
def test_each_message_becomes_a_valid_transaction_of_idempotent_puts(name: str) -> None:
    bundle = converted(name)

    assert Bundle.model_validate(bundle).type == "transaction"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }
    assert converted(name) == bundle


@pytest.mark.parametrize("name", [n for n in READABLE if not n.startswith("adt_")])
def test_observations_carry_loinc_mdc_and_ucum_and_name_their_patient_and_device(
    name: str,
) -> None:
    bundle = converted(name)
    observations = resources(bundle, "Observation")
    devices = {f"Device/{d['id']}" for d in resources(bundle, "Device")}
    patients = {f"Patient/{p['id']}" for p in resources(bundle, "Patient")}

    assert observations
    for observation in observations:
        assert {LOINC, MDC} <= systems(observation["code"])
        assert observation["device"]["reference"] in devices
        if patients:
            assert observation["subject"]["reference"] in patients
        parts = observation.get("component") or [observation]
        for part in parts:
            assert part["valueQuantity"]["system"] == UCUM
            assert part["valueQuantity"]["code"] in {kind.unit for kind in CATALOGUE.values()}


def test_a_cuff_reading_becomes_one_blood_pressure_panel() -> None:
    panels = [
        o
        for o in resources(converted("nist_acme_gateway_nibp.hl7"), "Observation")
        if any(c["code"] == "85354-9" for c in o["code"]["coding"])
    ]

    assert len(panels) == 1
    components = {c["code"]["coding"][0]["code"] for c in panels[0]["component"]}
    assert {"8480-6", "8462-4"} <= components


def test_an_admission_becomes_its_patient() -> None:
    (patient,) = resources(converted("adt_a01_admit.hl7"), "Patient")

    assert patient["name"][0]["family"] == "EVERYMAN"
    assert patient["identifier"][0]["system"] == "urn:oid:1.2.3.4"
    assert patient["managingOrganization"]["reference"] == "Organization/st-marys"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_message_with_faults_is_refused_naming_them(name: str) -> None:
    with pytest.raises(Untranslatable) as refused:
        converted(name)

    assert refused.value.faults


def test_the_function_answers_a_direct_invocation_with_the_bundle_or_why_not() -> None:
    message = (MESSAGES / "ihe_pcd_bpm_mds.hl7").read_text()
    event = {"message": message, "organisation_id": "o", "identifier_system": "urn:mrn"}

    answer = convert(event)
    refused = convert(event | {"message": "not HL7"})
    incomplete = convert({"message": message})

    assert answer["message_type"] == "ORU^R01"
    assert Bundle.model_validate(answer["bundle"]).entry
    assert set(refused) == {"error"}
    assert incomplete == {"error": "the event has no 'identifier_system'"}
