"""The HL7 → FHIR function on its S3 way in: messages put under `hl7/<interface>/` become FHIR
transaction Bundles beside them, converted with that interface's settings."""

from __future__ import annotations

from typing import Any

import orjson
from fhir.resources.R4B.bundle import Bundle

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.functions.hl7_to_fhir import convert_objects
from medcloud.ingest.upload_files import object_created_event
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.integration.interop.conftest import oru
from tests.support.client import bearer, now, running


async def interface_of(settings: Settings) -> str:
    """Create an HL7 interface in the bootstrap organisation; return its id."""
    async with running(settings) as api:
        admin = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        created = await api.http.post(
            "/api/v1/hl7/interfaces",
            headers=bearer(admin),
            json={
                "name": "Export feed",
                "identifier_system": "urn:oid:2.16.840.1.113883.19.5",
                "time_zone": "Europe/London",
            },
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


def events(*keys: str) -> dict[str, Any]:
    records = [object_created_event(k, bucket=None, prefix="")["Records"][0] for k in keys]
    return {"Records": records}


async def test_each_message_object_gets_its_bundle_and_what_cannot_be_read_is_told(
    settings: Settings,
) -> None:
    interface_id = await interface_of(settings)
    runtime = bootstrap(settings)
    good, bad = f"hl7/{interface_id}/2026/msg-1.hl7", f"hl7/{interface_id}/2026/msg-2.hl7"
    unknown = "hl7/no-such-interface/msg-3.hl7"
    try:
        await runtime.objects.put_bytes(good, oru("MSG-1", at=now()).encode())
        await runtime.objects.put_bytes(bad, b"not an HL7 message")
        await runtime.objects.put_bytes(unknown, oru("MSG-3", at=now()).encode())
        summary = await convert_objects(
            events(good, bad, unknown, "uploads/device/a.json"), runtime
        )
        written = orjson.loads(
            await runtime.objects.read_bytes(f"fhir/{interface_id}/2026/msg-1.hl7.json")
        )
        leftovers = await runtime.objects.list("fhir/")
    finally:
        await runtime.cache.close()
        await runtime.database.dispose()

    assert summary == {"converted": [good], "refused": [bad, unknown], "failed": [], "ignored": 1}
    assert leftovers == [f"fhir/{interface_id}/2026/msg-1.hl7.json"]
    assert (written["control_id"], written["message_type"]) == ("MSG-1", "ORU^R01")
    assert Bundle.model_validate(written["bundle"]).type == "transaction"
    resources = [e["resource"] for e in written["bundle"]["entry"]]
    # The monitor, its patient, and SpO2, pulse, blood pressure (one panel) and temperature.
    assert sorted(r["resourceType"] for r in resources) == [
        "Device",
        "Observation",
        "Observation",
        "Observation",
        "Observation",
        "Patient",
    ]
    (patient,) = [r for r in resources if r["resourceType"] == "Patient"]
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.840.1.113883.19.5"
