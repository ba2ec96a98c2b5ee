"""The same ingest cases through every transport: HTTP, MQTT and an uploaded file.

Each transport only reads its format and answers its own way; authorising, gating, keeping
refusals in quarantine and storing are the one use case's (`ingest/intake.py`), so each case
must come out the same whichever way the readings came.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from medcloud.ingest.intake import Intake
from medcloud.ingest.upload_files import Outcome
from medcloud.ingest.uploads import process_upload
from medcloud.platform.runtime import Runtime
from tests.support.client import Api, bearer, now, reading
from tests.support.mosquitto import Broker, mqtt_device

Sent = tuple[str, int, list[str]]
"""What the sender heard: `stored` or `refused`, readings stored, fields named as at fault."""
Send = Callable[[Api, Broker, dict[str, Any], Any], Awaitable[Sent]]


async def by_http(api: Api, _broker: Broker, device: dict[str, Any], body: Any) -> Sent:
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data", json=body, headers=bearer(device["token"])
    )
    if response.status_code == 201:
        return "stored", response.json()["stored"], []
    assert response.status_code == 422, response.text
    return "refused", 0, [error["field"] for error in response.json()["errors"]]


async def by_mqtt(api: Api, broker: Broker, device: dict[str, Any], body: Any) -> Sent:
    async with mqtt_device(broker, device["id"], device["token"]) as monitor:
        await monitor.publish(body, msg_id="m-1")
        ack = await monitor.ack("m-1")
    if ack["status"] == "stored":
        return "stored", ack["stored"], []
    return "refused", 0, [error["field"] for error in ack["errors"]]


async def by_upload(api: Api, _broker: Broker, device: dict[str, Any], body: Any) -> Sent:
    runtime: Runtime = api.app.state.runtime
    key = f"uploads/{device['id']}/{now().timestamp()}.json"
    await runtime.objects.put_bytes(key, orjson.dumps(body))
    outcome = await process_upload(
        key, objects=runtime.objects, intake=runtime.services.require(Intake), clock=runtime.clock
    )
    if outcome.outcome is Outcome.STORED:
        return "stored", outcome.stored, []
    assert outcome.outcome is Outcome.QUARANTINED, outcome
    report = orjson.loads(await runtime.objects.read_bytes(f"{outcome.moved_to}.report.json"))
    return "refused", 0, [error["field"] for error in report["errors"]]


TRANSPORTS = pytest.mark.parametrize(
    "send", [by_http, by_mqtt, by_upload], ids=["http", "mqtt", "upload"]
)


async def quarantined(api: Api, token: str, device_id: str) -> list[dict[str, Any]]:
    response = await api.http.get(
        "/api/v1/quarantine", params={"device_id": device_id}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@TRANSPORTS
async def test_a_batch_is_stored_whole_in_catalogue_units(
    api: Api, alice: str, broker: Broker, send: Send
) -> None:
    device = await api.register_device(alice)
    start = now() - dt.timedelta(minutes=1)
    batch = {
        "readings": [
            reading(start, heart_rate=72, spo2=97),
            {
                "timestamp": (start + dt.timedelta(seconds=1)).isoformat(),
                "measurements": {"temperature": {"value": 98.6, "unit": "[degF]"}},
            },
        ]
    }

    assert await send(api, broker, device, batch) == ("stored", 3, [])
    stored = {i["type"]: round(i["value"], 1) for i in await api.readings(alice, device["id"])}
    assert stored == {"heart_rate": 72, "spo2": 97, "temperature": 37.0}


@TRANSPORTS
async def test_one_impossible_reading_refuses_the_batch_and_is_kept_in_quarantine(
    api: Api, alice: str, broker: Broker, send: Send
) -> None:
    device = await api.register_device(alice)
    start = now() - dt.timedelta(minutes=1)
    batch = {
        "readings": [
            reading(start, heart_rate=72),
            reading(start + dt.timedelta(seconds=1), spo2=140),
        ]
    }

    assert await send(api, broker, device, batch) == (
        "refused",
        0,
        ["readings.1.measurements.spo2"],
    )
    assert await api.readings(alice, device["id"]) == []
    [kept] = await quarantined(api, alice, device["id"])
    assert "possible range" in kept["reason"]


@TRANSPORTS
async def test_a_reading_sent_again_is_stored_once(
    api: Api, alice: str, broker: Broker, send: Send
) -> None:
    device = await api.register_device(alice)
    body = reading(now() - dt.timedelta(seconds=30), heart_rate=80)

    assert await send(api, broker, device, body) == ("stored", 1, [])
    assert await send(api, broker, device, body) == ("stored", 0, [])
    assert len(await api.readings(alice, device["id"])) == 1
