"""HL7 v2 over MLLP, end to end: a gateway's messages in over a real socket, acknowledged only
once stored, and the readings, patients and devices they made read back over the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from medcloud.config import Settings
from medcloud.interop import receiver
from tests.integration.interop.conftest import (
    MMHG,
    PERCENT,
    SPO2,
    SYSTOLIC,
    Hl7Deployment,
    deployed,
    hl7_time,
    listening_on,
    obx,
    oru,
)
from tests.support.client import bearer, eventually, now
from tests.support.mllp import connected, segments


async def patient_named(hl7: Hl7Deployment, mrn: str) -> dict[str, Any] | None:
    found = await hl7.api.http.get("/api/v1/patients", headers=bearer(hl7.admin))
    assert found.status_code == 200, found.text
    return next((p for p in found.json()["items"] if p["identifier_value"] == mrn), None)


async def device_with_serial(hl7: Hl7Deployment, serial: str) -> dict[str, Any] | None:
    found = await hl7.api.http.get("/api/v1/devices", headers=bearer(hl7.admin))
    assert found.status_code == 200, found.text
    return next((d for d in found.json()["items"] if d["serial_number"] == serial), None)


async def latest(hl7: Hl7Deployment, patient_id: str) -> dict[str, float]:
    found = await hl7.api.http.get(
        f"/api/v1/readings/latest/{patient_id}", headers=bearer(hl7.admin)
    )
    assert found.status_code == 200, found.text
    return {item["type"]: item["value"] for item in found.json()["items"]}


async def stored(hl7: Hl7Deployment, device_id: str) -> list[dict[str, Any]]:
    return await hl7.api.readings(hl7.admin, device_id, limit=1000)


async def test_a_monitors_vitals_are_acknowledged_aa_once_stored_for_the_patient_pid_names(
    hl7: Hl7Deployment,
) -> None:
    taken = now() - dt.timedelta(seconds=5)
    async with connected(hl7.port) as gateway:
        ack = segments(await gateway.send(oru("MSG-0001", at=taken)))

    assert ack["MSA"][1:3] == ["AA", "MSG-0001"]
    assert ack["MSH"][8] == "ACK^R01^ACK"
    # Registered from PID, as the local interface may; the monitor discovered from OBX-18.
    patient = await patient_named(hl7, "MRN-7001")
    assert patient is not None
    assert (patient["family_name"], patient["given_name"]) == ("DOE", "JANE")
    assert patient["birth_date"] == "1958-03-12"
    monitor = await device_with_serial(hl7, "0080AAFFFE000001")
    assert monitor is not None
    assert monitor["patient_id"] == patient["id"]
    # Values in the catalogue's units (98.6 °F is 37 °C); nothing for the row not available or
    # the row not obtained, nor for the containment tree's MDS row.
    values = await latest(hl7, patient["id"])
    assert values == {
        "spo2": 97.0,
        "heart_rate": 72.0,
        "systolic_bp": 120.0,
        "diastolic_bp": 80.0,
        "temperature": 37.0,
    }
    rows = await stored(hl7, monitor["id"])
    assert len(rows) == 5
    assert {dt.datetime.fromisoformat(r["timestamp"]) for r in rows} == {
        taken.replace(microsecond=taken.microsecond // 1000 * 1000)
    }


async def test_a_repeated_control_id_is_answered_the_same_and_stored_once(
    hl7: Hl7Deployment,
) -> None:
    message = oru("MSG-0002", at=now() - dt.timedelta(seconds=3))
    async with connected(hl7.port) as gateway:
        first = await gateway.send(message)
        again = await gateway.send(message)
    async with connected(hl7.port) as reconnected:
        third = await reconnected.send(message)

    assert segments(first)["MSA"][1] == "AA"
    assert again == first == third
    monitor = await device_with_serial(hl7, "0080AAFFFE000001")
    assert monitor is not None
    assert len(await stored(hl7, monitor["id"])) == 5


async def test_a_value_outside_what_a_patient_can_present_is_refused_ae_naming_its_obx(
    hl7: Hl7Deployment,
) -> None:
    time = hl7_time(now() - dt.timedelta(seconds=2))
    rows = [
        obx(2, SYSTOLIC, "1.1.2.1", "120", MMHG, time=time, equipment="0080AAFFFE000002"),
        obx(3, SPO2, "1.1.1.1", "140", PERCENT, time=time, equipment="0080AAFFFE000002"),
    ]
    async with connected(hl7.port) as gateway:
        ack = segments(await gateway.send(oru("MSG-0003", at=now(), rows=rows)))

    assert ack["MSA"][1:3] == ["AE", "MSG-0003"]
    assert ack["ERR"][2] == "OBX^3^5"
    monitor = await device_with_serial(hl7, "0080AAFFFE000002")
    assert monitor is not None
    assert await stored(hl7, monitor["id"]) == []


async def test_what_cannot_be_read_is_answered_ar_and_the_connection_goes_on(
    hl7: Hl7Deployment,
) -> None:
    async with connected(hl7.port) as gateway:
        # Line noise before a frame, then a frame that is no HL7 at all.
        await gateway.send_raw(b"\x00\x07garbage")
        refused = segments(await gateway.send("this is not an HL7 message"))
        accepted = segments(await gateway.send(oru("MSG-0004", at=now())))

    assert refused["MSA"][1] == "AR"
    assert accepted["MSA"][1:3] == ["AA", "MSG-0004"]


async def test_a_message_of_a_type_not_taken_is_answered_ar(hl7: Hl7Deployment) -> None:
    message = oru("MSG-0005", at=now()).replace("ORU^R01^ORU_R01", "ORM^O01^ORM_O01")
    async with connected(hl7.port) as gateway:
        ack = segments(await gateway.send(message))

    assert ack["MSA"][1:3] == ["AR", "MSG-0005"]
    assert ack["ERR"][3].startswith("200^")


async def test_an_unknown_patient_is_refused_ae_by_an_interface_that_may_not_register(
    hl7: Hl7Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The listener reads interfaces anew every few seconds; here, at every message.
    monkeypatch.setattr(receiver, "INTERFACES_FRESH_SECONDS", 0.0)
    created = await hl7.api.http.post(
        "/api/v1/hl7/interfaces",
        headers=bearer(hl7.admin),
        json={
            "name": "ICU gateway",
            "sending_application": "ICUGW",
            "identifier_system": "urn:oid:1.2.3.4",
        },
    )
    assert created.status_code == 201, created.text
    message = oru("MSG-0006", at=now(), mrn="MRN-9999").replace("GATEWAY^0080", "ICUGW^0080")
    async with connected(hl7.port) as gateway:
        ack = segments(await gateway.send(message))

    assert ack["MSA"][1:3] == ["AE", "MSG-0006"]
    assert ack["ERR"][2] == "PID^1^3"
    assert await patient_named(hl7, "MRN-9999") is None


async def test_adt_registers_a_patient_and_then_updates_them(hl7: Hl7Deployment) -> None:
    def adt(event: str, control_id: str, name: str) -> str:
        return "\r".join(
            [
                f"MSH|^~\\&|ADT1|HOSP|MEDCLOUD|HOSP|{hl7_time(now())}||ADT^{event}^ADT_A01|"
                f"{control_id}|P|2.5",
                f"EVN|{event}|{hl7_time(now())}",
                f"PID|1||MRN-8001^^^HOSP^MR||{name}^^^^L||19700101|M",
                "PV1|1|I|CARDIO^101^2",
            ]
        )

    async with connected(hl7.port) as feed:
        registered = segments(await feed.send(adt("A04", "ADT-1", "EVERYMAN^ADAM")))
        updated = segments(await feed.send(adt("A08", "ADT-2", "EVERYMAN^ADAM A")))

    assert registered["MSA"][1] == updated["MSA"][1] == "AA"
    patient = await patient_named(hl7, "MRN-8001")
    assert patient is not None
    assert (patient["family_name"], patient["given_name"]) == ("EVERYMAN", "ADAM A")

    async def audited() -> list[tuple[str, str]]:
        found = await hl7.api.http.get(
            "/api/v1/audit", headers=bearer(hl7.admin), params={"patient_id": patient["id"]}
        )
        assert found.status_code == 200, found.text
        return [(e["action"], e["actor_id"]) for e in found.json()["items"]]

    async def both() -> list[tuple[str, str]]:
        trail = await audited()
        return trail if len(trail) >= 2 else []

    trail = await eventually(both)
    assert ("patient.create", "hl7:Local monitors") in trail
    assert ("patient.update", "hl7:Local monitors") in trail


async def test_an_oversized_message_is_refused_ar_and_the_listener_serves_on(
    settings: Settings,
) -> None:
    async with deployed(listening_on(settings, max_message_bytes=4096)) as small:
        padded = oru("MSG-BIG", at=now()) + "\rNTE|1||" + "x" * 10_000
        async with connected(small.port) as gateway:
            ack = segments(await gateway.send(padded))
        assert ack["MSA"][1:3] == ["AR", "MSG-BIG"]
        async with connected(small.port) as gateway:
            answer = segments(await gateway.send(oru("MSG-SMALL", at=now())))
        assert answer["MSA"][1:3] == ["AA", "MSG-SMALL"]


async def test_a_monitor_moved_to_another_patient_files_each_message_under_its_pid(
    hl7: Hl7Deployment,
) -> None:
    first, moved = now() - dt.timedelta(seconds=20), now() - dt.timedelta(seconds=10)
    temperature = "150364^MDC_TEMP_BODY"
    celsius = "268192^MDC_DIM_DEGC"

    def taken(at: dt.datetime, value: str) -> list[str]:
        time = hl7_time(at)
        return [obx(2, temperature, "1.1.3.1", value, celsius, time=time, equipment="00AB")]

    async with connected(hl7.port) as gateway:
        for control_id, at, mrn, value in (
            ("MOVE-1", first, "MRN-A", "36.6"),
            ("MOVE-2", moved, "MRN-B", "38.4"),
            ("MOVE-3", moved + dt.timedelta(seconds=5), "MRN-B", "38.5"),
        ):
            message = oru(control_id, at=at, mrn=mrn, equipment="00AB", rows=taken(at, value))
            assert segments(await gateway.send(message))["MSA"][1] == "AA"

    anne, bert = await patient_named(hl7, "MRN-A"), await patient_named(hl7, "MRN-B")
    assert anne is not None and bert is not None
    assert await latest(hl7, anne["id"]) == {"temperature": 36.6}
    assert await latest(hl7, bert["id"]) == {"temperature": 38.5}
    monitor = await device_with_serial(hl7, "00AB")
    assert monitor is not None
    history = await hl7.api.http.get(
        f"/api/v1/devices/{monitor['id']}/assignments", headers=bearer(hl7.admin)
    )
    assert history.status_code == 200, history.text
    assert [a["patient_id"] for a in history.json()["items"]] == [bert["id"], anne["id"]]
