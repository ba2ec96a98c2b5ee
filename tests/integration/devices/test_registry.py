"""The registry: models, device details, search, assignments with history, decommissioning."""

from __future__ import annotations

import datetime as dt
from typing import Any

from medcloud.platform.clock import FrozenClock
from tests.integration.devices.conftest import authenticates
from tests.integration.devices.fleet import MANUFACTURER, MODEL, register_model
from tests.support.client import Api, bearer, reading


async def search(api: Api, token: str, **params: Any) -> list[str]:
    response = await api.http.get("/api/v1/devices", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return [item["serial_number"] for item in response.json()["items"]]


async def history(api: Api, token: str, device_id: str) -> list[dict[str, Any]]:
    response = await api.http.get(f"/api/v1/devices/{device_id}/assignments", headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_device_registered_by_model_id_takes_the_models_names_and_details(
    api: Api, tom_technician: str
) -> None:
    vendor = await register_model(api, tom_technician)
    response = await api.http.post(
        "/api/v1/devices",
        json={
            "serial_number": "PO3-77",
            "model_id": vendor.model_id,
            "udi": "(01)00844588003288(21)PO3-77",
            "hardware_revision": "C",
            "firmware_version": "1.2.0",
            "ward_id": "ward-icu",
            "location": "Bed 4",
        },
        headers=bearer(tom_technician),
    )
    assert response.status_code == 201, response.text
    device = response.json()
    assert (device["model"], device["manufacturer"]) == (MODEL, MANUFACTURER)
    assert device["model_id"] == vendor.model_id
    assert (device["udi"], device["hardware_revision"]) == ("(01)00844588003288(21)PO3-77", "C")
    assert (device["ward_id"], device["location"], device["status"]) == (
        "ward-icu",
        "Bed 4",
        "unknown",
    )


async def test_a_model_needs_an_ed25519_key(api: Api, alice_admin: str) -> None:
    response = await api.http.post(
        "/api/v1/device-models",
        json={"manufacturer": "X", "model": "Y", "signing_public_key": "not a key"},
        headers=bearer(alice_admin),
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["signing_public_key"]


async def test_devices_are_found_by_model_ward_version_and_status(
    api: Api, alice_admin: str
) -> None:
    for serial, model, ward, version in (
        ("A-1", "PulseOx 2", "w1", "1.0"),
        ("A-2", "PulseOx 2", "w2", "2.0"),
        ("B-1", "Monitor 9", "w1", "1.0"),
    ):
        response = await api.http.post(
            "/api/v1/devices",
            json={
                "serial_number": serial,
                "model": model,
                "manufacturer": "Acme",
                "ward_id": ward,
                "firmware_version": version,
            },
            headers=bearer(alice_admin),
        )
        assert response.status_code == 201, response.text
    assert sorted(await search(api, alice_admin, model="PulseOx 2")) == ["A-1", "A-2"]
    assert sorted(await search(api, alice_admin, ward_id="w1")) == ["A-1", "B-1"]
    assert await search(api, alice_admin, model="PulseOx 2", firmware_version="2.0") == ["A-2"]
    assert await search(api, alice_admin, status="offline") == []
    assert len(await search(api, alice_admin, status="unknown")) == 3
    page = await api.http.get("/api/v1/devices", params={"limit": 2}, headers=bearer(alice_admin))
    rest = await api.http.get(
        "/api/v1/devices",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
        headers=bearer(alice_admin),
    )
    assert len(page.json()["items"]) == 2 and len(rest.json()["items"]) == 1
    bad = await api.http.get(
        "/api/v1/devices", params={"status": "sleeping"}, headers=bearer(alice_admin)
    )
    assert bad.status_code == 422


async def test_reassigning_a_device_keeps_its_history(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    first = await api.create_patient(alice_admin, "MRN-1")
    second = await api.create_patient(alice_admin, "MRN-2")
    device = await api.register_device(alice_admin, "PO-9", first)
    clock.advance(minutes=10)
    moved = await api.http.put(
        f"/api/v1/devices/{device['id']}/assignment",
        json={"patient_id": second},
        headers=bearer(alice_admin),
    )
    assert moved.status_code == 200, moved.text
    now, before = await history(api, alice_admin, device["id"])
    assert (now["patient_id"], now["ended_at"]) == (second, None)
    assert before["patient_id"] == first
    assert before["ended_at"] == now["started_at"]
    read = await api.http.get(f"/api/v1/devices/{device['id']}", headers=bearer(alice_admin))
    assert read.json()["patient_id"] == second
    nobody = await api.http.put(
        f"/api/v1/devices/{device['id']}/assignment",
        json={"patient_id": "no-such-patient"},
        headers=bearer(alice_admin),
    )
    assert nobody.status_code == 422
    assert [e["field"] for e in nobody.json()["errors"]] == ["patient_id"]


async def test_a_reading_belongs_to_the_patient_assigned_when_it_was_taken(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    first = await api.create_patient(alice_admin, "MRN-1")
    second = await api.create_patient(alice_admin, "MRN-2")
    device = await api.register_device(alice_admin, "PO-10", first)
    taken_on_first = clock.now() + dt.timedelta(minutes=5)
    clock.advance(minutes=10)
    moved = await api.http.put(
        f"/api/v1/devices/{device['id']}/assignment",
        json={"patient_id": second},
        headers=bearer(alice_admin),
    )
    assert moved.status_code == 200, moved.text
    clock.advance(minutes=1)
    # Sent after the move in one batch: a reading buffered while the first patient wore the
    # device, and a fresh one from the second patient.
    sent = await api.send(
        device,
        {
            "readings": [
                reading(taken_on_first, heart_rate=71),
                reading(clock.now(), heart_rate=92),
            ]
        },
    )
    assert sent.status_code == 201, sent.text

    async def latest(patient_id: str) -> list[float]:
        response = await api.http.get(
            f"/api/v1/readings/latest/{patient_id}", headers=bearer(alice_admin)
        )
        assert response.status_code == 200, response.text
        return [item["value"] for item in response.json()["items"]]

    assert await latest(first) == [71]
    assert await latest(second) == [92]


async def test_a_decommissioned_device_keeps_its_history_but_no_longer_works(
    api: Api, alice_admin: str
) -> None:
    patient = await api.create_patient(alice_admin)
    device = await api.register_device(alice_admin, "PO-OLD", patient)
    response = await api.http.patch(
        f"/api/v1/devices/{device['id']}",
        json={"decommissioned": True},
        headers=bearer(alice_admin),
    )
    assert response.status_code == 200, response.text
    gone = response.json()
    assert (gone["status"], gone["patient_id"]) == ("decommissioned", None)
    assert gone["decommissioned_at"] is not None
    [assignment] = await history(api, alice_admin, device["id"])
    assert assignment["patient_id"] == patient and assignment["ended_at"] is not None
    assert not await authenticates(api, device, device["token"])
    assert await search(api, alice_admin, status="decommissioned") == ["PO-OLD"]
    again = await api.http.patch(
        f"/api/v1/devices/{device['id']}", json={"location": "x"}, headers=bearer(alice_admin)
    )
    assert again.status_code == 409


async def test_a_clinician_may_neither_change_nor_assign_a_device(
    api: Api, alice_admin: str, bob_clinician: str
) -> None:
    device = await api.register_device(alice_admin, "PO-C")
    patch = await api.http.patch(
        f"/api/v1/devices/{device['id']}", json={"location": "x"}, headers=bearer(bob_clinician)
    )
    assert patch.status_code == 403
    assign = await api.http.put(
        f"/api/v1/devices/{device['id']}/assignment",
        json={"patient_id": None},
        headers=bearer(bob_clinician),
    )
    assert assign.status_code == 403
