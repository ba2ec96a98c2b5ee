"""Clinical data reaches only the people caring for that patient."""

from __future__ import annotations

from tests.support.cast import Cast
from tests.support.client import Api, eventually, reading


async def test_carol_sees_her_wards_patient_and_not_the_other_wards(api: Api, cast: Cast) -> None:
    peter, olive = cast.patients["peter"], cast.patients["olive"]
    listed = await api.http.get("/api/v1/patients", headers=cast.auth("carol_clinician"))
    assert [p["id"] for p in listed.json()["items"]] == [peter["id"]]
    own = await api.http.get(
        f"/api/v1/patients/{peter['id']}", headers=cast.auth("carol_clinician")
    )
    assert own.status_code == 200
    other = await api.http.get(
        f"/api/v1/patients/{olive['id']}", headers=cast.auth("carol_clinician")
    )
    assert other.status_code == 404


async def test_readings_and_alerts_follow_the_care_team(api: Api, cast: Cast) -> None:
    peters, olives = cast.devices["peters_oximeter"], cast.devices["olives_monitor"]
    assert (await api.send(peters, reading(heart_rate=150))).status_code == 201
    assert (await api.send(olives, reading(heart_rate=30))).status_code == 201
    await api.wait_for_alerts(cast.tokens["alice_admin"], 2)

    carol = cast.tokens["carol_clinician"]
    assert len(await api.readings(carol, peters["id"])) == 1
    hidden = await api.http.get(
        f"/api/v1/devices/{olives['id']}/data", headers=cast.auth("carol_clinician")
    )
    assert hidden.status_code == 404
    assert [a["device_id"] for a in await api.alerts(carol)] == [peters["id"]]
    assert [a["device_id"] for a in await api.alerts(cast.tokens["bob_other_ward"])] == [
        olives["id"]
    ]
    assert len(await api.alerts(cast.tokens["mallory_other_org"])) == 0


async def test_technicians_and_auditors_never_see_clinical_data(api: Api, cast: Cast) -> None:
    device = cast.devices["peters_oximeter"]
    for name in ("tess_technician", "audrey_auditor"):
        for path in (
            f"/api/v1/devices/{device['id']}/data",
            "/api/v1/alerts",
            "/api/v1/patients",
            f"/api/v1/patients/{cast.patients['peter']['id']}",
        ):
            response = await api.http.get(path, headers=cast.auth(name))
            assert response.status_code == 403, (name, path)


async def test_break_glass_opens_a_patient_for_a_while_and_is_audited(api: Api, cast: Cast) -> None:
    olive = cast.patients["olive"]
    carol = cast.auth("carol_clinician")
    assert (await api.http.get(f"/api/v1/patients/{olive['id']}", headers=carol)).status_code == 404

    no_reason = await api.http.post(
        f"/api/v1/patients/{olive['id']}/break-glass", json={"reason": ""}, headers=carol
    )
    assert no_reason.status_code == 422
    granted = await api.http.post(
        f"/api/v1/patients/{olive['id']}/break-glass",
        json={"reason": "cardiac arrest call on Oncology, covering"},
        headers=carol,
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["expires_at"] > granted.json()["granted_at"]
    assert (await api.http.get(f"/api/v1/patients/{olive['id']}", headers=carol)).status_code == 200

    nurse = await api.http.post(
        f"/api/v1/patients/{olive['id']}/break-glass",
        json={"reason": "nurses cannot break the glass"},
        headers=cast.auth("nina_nurse"),
    )
    assert nurse.status_code == 403

    from sqlalchemy import select

    from medcloud.platform.models import OutboxMessage

    async def break_glass_events() -> list[str]:
        async with api.app.state.runtime.read_sessions() as session:
            bodies = await session.scalars(
                select(OutboxMessage.body).where(OutboxMessage.routing_key == "audit.recorded")
            )
            return [b for b in bodies.all() if "patient.break_glass" in b]

    events = await eventually(break_glass_events)
    assert len(events) == 1 and "cardiac arrest call" in events[0]


async def test_a_ward_change_takes_effect_on_the_next_request(api: Api, cast: Cast) -> None:
    olive = cast.patients["olive"]
    carol = cast.auth("carol_clinician")
    assert (await api.http.get(f"/api/v1/patients/{olive['id']}", headers=carol)).status_code == 404
    moved = await api.http.patch(
        f"/api/v1/patients/{olive['id']}",
        json={"ward_id": cast.wards["cardiology"]},
        headers=cast.auth("alice_admin"),
    )
    assert moved.status_code == 200
    assert (await api.http.get(f"/api/v1/patients/{olive['id']}", headers=carol)).status_code == 200


async def test_nina_registers_patients_into_her_own_ward_only(api: Api, cast: Cast) -> None:
    def patient(ward: str, identifier: str) -> dict[str, str]:
        return {
            "identifier_system": "urn:test",
            "identifier_value": identifier,
            "family_name": "Pritchard",
            "given_name": "Pam",
            "birth_date": "1948-02-29",
            "ward_id": cast.wards[ward],
        }

    elsewhere = await api.http.post(
        "/api/v1/patients", json=patient("oncology", "P-7001"), headers=cast.auth("nina_nurse")
    )
    own = await api.http.post(
        "/api/v1/patients", json=patient("cardiology", "P-7002"), headers=cast.auth("nina_nurse")
    )

    assert elsewhere.status_code == 422, elsewhere.text
    assert [e["field"] for e in elsewhere.json()["errors"]] == ["ward_id"]
    assert own.status_code == 201, own.text
