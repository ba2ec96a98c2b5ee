"""Liveness: heartbeats, offline after three silent intervals, technical alerts, gauges."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.devices.status import check_devices
from medcloud.platform.clock import FrozenClock
from medcloud.platform.models import OutboxMessage
from medcloud.platform.security import Role, UserPrincipal
from tests.integration.devices.conftest import ST_MARY, runtime
from tests.integration.devices.fleet import MANUFACTURER, MODEL, register_model
from tests.support.client import Api, bearer, eventually, reading, running


async def published(api: Api, routing_key: str) -> list[dict[str, Any]]:
    async with runtime(api).read_sessions() as session:
        bodies = await session.scalars(
            select(OutboxMessage.body)
            .where(OutboxMessage.routing_key == routing_key)
            .order_by(OutboxMessage.position)
        )
        return [orjson.loads(body)["payload"] for body in bodies]


async def check(api: Api) -> None:
    """One pass of the status monitor (the background loop runs the same, on a timer)."""
    built = runtime(api)
    await check_devices(
        uow_factory=built.uow,
        read_sessions=built.read_sessions,
        metrics=built.metrics,
        settings=built.settings,
    )


async def monitored_device(api: Api, token: str, **extra: Any) -> dict[str, Any]:
    patient_id = await api.create_patient(token)
    response = await api.http.post(
        "/api/v1/devices",
        json={
            "serial_number": "MON-1",
            "model": MODEL,
            "manufacturer": MANUFACTURER,
            "patient_id": patient_id,
            **extra,
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def beat(api: Api, device: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/heartbeat", json=body, headers=bearer(device["token"])
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def devices_with_status(api: Api, token: str, status: str) -> list[str]:
    response = await api.http.get(
        "/api/v1/devices", params={"status": status}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def device_alerts(api: Api, token: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get("/api/v1/device-alerts", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_silent_device_is_offline_within_three_intervals_and_back_on_its_next_beat(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    await register_model(api, alice_admin, interval=60)
    device = await monitored_device(api, alice_admin)
    assert device["status"] == "unknown"
    assert (await beat(api, device, battery_percent=90))["status"] == "online"

    clock.advance(seconds=180)
    await check(api)
    assert await devices_with_status(api, alice_admin, "online") == [device["id"]]

    clock.advance(seconds=1)
    await check(api)
    assert await devices_with_status(api, alice_admin, "offline") == [device["id"]]
    [alert] = await device_alerts(api, alice_admin, open="true")
    assert (alert["kind"], alert["device_id"]) == ("device_offline", device["id"])
    assert alert["patient_id"] == device["patient_id"]
    [raised] = await published(api, "device.alert.raised")
    assert raised["kind"] == "device_offline"

    assert (await beat(api, device))["status"] == "online"
    assert await device_alerts(api, alice_admin, open="true") == []
    changes = [(c["previous"], c["status"]) for c in await published(api, "device.status.changed")]
    assert changes == [("unknown", "online"), ("online", "offline"), ("offline", "online")]
    [resolved] = await published(api, "device.alert.resolved")
    assert resolved["alert_id"] == alert["id"]
    await check(api)
    metrics = (await api.http.get("/metrics")).text
    assert 'devices_by_status{status="online"} 1.0' in metrics
    assert 'devices_by_status{status="offline"} 0.0' in metrics
    assert "active_devices_total" in metrics


async def test_an_unassigned_device_goes_offline_without_an_alert(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    device = await api.register_device(alice_admin, "LOOSE-1")
    await beat(api, device)
    clock.advance(seconds=3 * 60 + 1)  # no model: the default interval of 60 s applies
    await check(api)
    assert await devices_with_status(api, alice_admin, "offline") == [device["id"]]
    assert await device_alerts(api, alice_admin) == []


async def test_a_reading_counts_as_a_sign_of_life(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    device = await monitored_device(api, alice_admin)
    await beat(api, device)
    clock.advance(seconds=600)
    await check(api)
    assert await devices_with_status(api, alice_admin, "offline") == [device["id"]]

    sent = await api.send(device, reading(clock.now(), heart_rate=72))
    assert sent.status_code == 201, sent.text

    async def online() -> bool:
        return await devices_with_status(api, alice_admin, "online") == [device["id"]]

    assert await eventually(online)


async def test_a_low_battery_raises_an_alert_until_it_is_charged(
    api: Api, alice_admin: str
) -> None:
    device = await monitored_device(api, alice_admin)
    await beat(api, device, battery_percent=15)
    await beat(api, device, battery_percent=12)  # one alert, not one per heartbeat
    [alert] = await device_alerts(api, alice_admin, open="true")
    assert alert["kind"] == "low_battery"
    await beat(api, device, battery_percent=95)
    assert await device_alerts(api, alice_admin, open="true") == []
    [closed] = await device_alerts(api, alice_admin)
    assert closed["resolved_at"] is not None


async def test_a_heartbeat_records_what_the_device_says(api: Api, alice_admin: str) -> None:
    device = await monitored_device(api, alice_admin)
    await beat(
        api,
        device,
        battery_percent=77,
        signal_strength_dbm=-71,
        firmware_version="4.2.1",
        uptime_seconds=3600,
    )
    read = (
        await api.http.get(f"/api/v1/devices/{device['id']}", headers=bearer(alice_admin))
    ).json()
    assert (read["battery_percent"], read["signal_strength_dbm"]) == (77, -71)
    assert (read["firmware_version"], read["uptime_seconds"]) == ("4.2.1", 3600)


async def test_a_device_may_heartbeat_only_for_itself(api: Api, alice_admin: str) -> None:
    device = await monitored_device(api, alice_admin)
    other = await api.register_device(alice_admin, "OTHER-1")
    response = await api.http.post(
        f"/api/v1/devices/{other['id']}/heartbeat", json={}, headers=bearer(device["token"])
    )
    assert response.status_code == 403
    bad = await api.http.post(
        f"/api/v1/devices/{device['id']}/heartbeat",
        json={"battery_percent": 140},
        headers=bearer(device["token"]),
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["battery_percent"]


async def test_the_monitor_runs_by_itself_in_the_background(
    settings: Settings, clock: FrozenClock
) -> None:
    devices = settings.devices.model_copy(update={"status_check_seconds": 0.05})
    fast = settings.model_copy(update={"devices": devices})
    built = bootstrap(fast, clock=clock)
    async with running(fast, runtime=built) as api:
        token = built.tokens.issue(UserPrincipal("u-alice", ST_MARY, Role.ADMIN))
        device = await api.register_device(token, "BG-1")
        await beat(api, device)
        clock.advance(seconds=181)

        async def offline() -> bool:
            return await devices_with_status(api, token, "offline") == [device["id"]]

        assert await eventually(offline)
