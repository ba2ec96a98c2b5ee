"""Technical alerts in the clinical alert list: a silent or flat monitor shows to its patient's
clinicians, next to the alerts rules raise on readings, until the device is back."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from medcloud.analytics import technical as analytics
from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.devices import status as devices
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved
from medcloud.platform.clock import FrozenClock
from medcloud.platform.models import ProcessedEvent
from medcloud.platform.runtime import Runtime
from tests.support.cast import Cast
from tests.support.client import Api, bearer, eventually, reading, running

SILENT_FOR_THREE_INTERVALS = 3 * 60 + 1  # the cast's PulseOx 2 reports every 60 s


@pytest.fixture
def clock() -> FrozenClock:
    """Time stands still until a test moves it (the status monitor judges silence by it)."""
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
async def api(settings: Settings, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running(settings, runtime=bootstrap(settings, clock=clock)) as client:
        yield client


def runtime(api: Api) -> Runtime:
    value: Runtime = api.app.state.runtime
    return value


async def check(api: Api) -> None:
    """One pass of the status monitor (the background loop runs the same, on a timer)."""
    built = runtime(api)
    await devices.check_devices(
        uow_factory=built.uow,
        read_sessions=built.read_sessions,
        metrics=built.metrics,
        settings=built.settings,
    )


async def beat(api: Api, device: dict[str, Any], **body: Any) -> None:
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/heartbeat", json=body, headers=bearer(device["token"])
    )
    assert response.status_code == 200, response.text


async def technical(api: Api, token: str, **params: Any) -> list[dict[str, Any]]:
    return await api.alerts(token, source="technical", **params)


async def processed(api: Api, consumer: str) -> int:
    """Count the events a consumer has applied."""
    async with runtime(api).read_sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ProcessedEvent)
            .where(ProcessedEvent.consumer == consumer)
        )
    return int(count or 0)


async def test_a_silent_monitor_alerts_its_patients_clinicians_until_it_is_back_online(
    api: Api, cast: Cast, clock: FrozenClock
) -> None:
    peters, olives = cast.devices["peters_oximeter"], cast.devices["olives_monitor"]
    await beat(api, olives)  # Peter's oximeter has beaten already, when the cast was set up
    clock.advance(seconds=SILENT_FOR_THREE_INTERVALS)
    await check(api)

    async def carol_sees_one() -> list[dict[str, Any]]:
        return await technical(api, cast.tokens["carol_clinician"])

    [alert] = await eventually(carol_sees_one)
    assert alert["source"] == "technical"
    assert (alert["device_id"], alert["patient_id"]) == (peters["id"], cast.patients["peter"]["id"])
    assert (alert["rule"], alert["severity"]) == ("device_offline", "high")
    assert alert["message"] and alert["resolved_at"] is None
    assert (alert["measurement"], alert["value"], alert["reading_timestamp"]) == (None, None, None)
    # The same alert as in the devices context's list, under the same id.
    device_alerts = await api.http.get(
        "/api/v1/device-alerts", params={"open": "true"}, headers=cast.auth("alice_admin")
    )
    assert alert["id"] in {a["id"] for a in device_alerts.json()["items"]}

    # Care scope: each ward sees its own patient's monitor, and another organisation nothing.
    assert [a["device_id"] for a in await api.alerts(cast.tokens["nina_nurse"])] == [peters["id"]]

    async def bob_sees_olives() -> list[str]:
        return [a["device_id"] for a in await api.alerts(cast.tokens["bob_other_ward"])]

    assert await eventually(bob_sees_olives) == [olives["id"]]
    assert await api.alerts(cast.tokens["mallory_clinician"]) == []
    assert await api.alerts(cast.tokens["carol_clinician"], source="clinical") == []

    await beat(api, peters)

    async def resolved() -> bool:
        [now] = await technical(api, cast.tokens["carol_clinician"])
        return now["resolved_at"] is not None

    assert await eventually(resolved)
    [olives_alert] = await technical(api, cast.tokens["bob_other_ward"])
    assert olives_alert["resolved_at"] is None


async def test_a_low_battery_is_a_technical_alert_until_the_device_is_charged(
    api: Api, cast: Cast
) -> None:
    oximeter = cast.devices["peters_oximeter"]
    await beat(api, oximeter, battery_percent=9)

    async def raised() -> list[dict[str, Any]]:
        return await technical(api, cast.tokens["carol_clinician"])

    [alert] = await eventually(raised)
    assert (alert["rule"], alert["severity"]) == ("low_battery", "medium")
    assert await technical(api, cast.tokens["bob_other_ward"]) == []

    await beat(api, oximeter, battery_percent=96)

    async def charged() -> bool:
        [now] = await technical(api, cast.tokens["carol_clinician"])
        return now["resolved_at"] is not None

    assert await eventually(charged)


async def test_clinical_and_technical_alerts_share_the_list_and_filter_apart(
    api: Api, cast: Cast
) -> None:
    oximeter = cast.devices["peters_oximeter"]
    admin = cast.tokens["alice_admin"]
    await beat(api, oximeter, battery_percent=9)
    sent = await api.send(oximeter, reading(runtime(api).clock.now(), heart_rate=150))
    assert sent.status_code == 201, sent.text

    both = await api.wait_for_alerts(admin, 2)
    assert sorted(a["source"] for a in both) == ["clinical", "technical"]
    [clinical] = await api.alerts(admin, source="clinical")
    assert (clinical["rule"], clinical["value"]) == ("heart_rate_high", 150)
    assert clinical["resolved_at"] is None
    [tech] = await api.alerts(admin, source="technical")
    assert tech["rule"] == "low_battery"

    bad = await api.http.get("/api/v1/alerts", params={"source": "gossip"}, headers=bearer(admin))
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.source"]


async def test_a_device_in_use_on_nobody_raises_no_clinical_alert(api: Api, cast: Cast) -> None:
    admin = cast.tokens["alice_admin"]
    loose = await api.register_device(admin, "LOOSE-1")
    await beat(api, loose, battery_percent=5)
    device_alerts = await api.http.get(
        "/api/v1/device-alerts", params={"device_id": loose["id"]}, headers=bearer(admin)
    )
    assert [a["kind"] for a in device_alerts.json()["items"]] == ["low_battery"]

    async def delivered() -> bool:
        return await processed(api, "analytics.record_technical_alert") >= 1

    assert await eventually(delivered)
    assert await api.alerts(admin) == []


async def test_a_resolution_delivered_before_its_alert_still_resolves_it(
    api: Api, cast: Cast, clock: FrozenClock
) -> None:
    # Raises and resolutions travel on separate queues, so either may be applied first.
    oximeter, peter = cast.devices["peters_oximeter"], cast.patients["peter"]["id"]
    raised_at = clock.now()
    details: dict[str, Any] = {
        "organisation_id": await organisation_of(api, cast, "carol_clinician"),
        "alert_id": "00000000-0000-4000-8000-000000000001",
        "device_id": oximeter["id"],
        "patient_id": peter,
        "kind": "device_offline",
        "severity": "high",
        "message": "no data from a device in use on a patient",
        "raised_at": raised_at,
    }
    resolution = DeviceAlertResolved(**details, resolved_at=raised_at + dt.timedelta(minutes=2))
    raise_ = DeviceAlertRaised(**details)
    async with runtime(api).uow() as uow:
        await analytics.resolve_technical_alert(uow=uow, resolution=resolution)
        await uow.commit()
    for _ in range(2):  # the late raise, then a redelivery of it
        async with runtime(api).uow() as uow:
            assert not await analytics.record_technical_alert(uow=uow, alert=raise_)
            await uow.commit()

    [alert] = await technical(api, cast.tokens["carol_clinician"])
    assert alert["id"] == details["alert_id"]
    assert alert["resolved_at"] is not None and alert["severity"] == "high"


async def test_a_resolution_without_the_raises_details_resolves_a_recorded_alert(
    api: Api, cast: Cast, clock: FrozenClock
) -> None:
    # What a publisher from before the details were added sends.
    oximeter = cast.devices["peters_oximeter"]
    raise_ = DeviceAlertRaised(
        organisation_id=await organisation_of(api, cast, "carol_clinician"),
        alert_id="00000000-0000-4000-8000-000000000002",
        device_id=oximeter["id"],
        patient_id=cast.patients["peter"]["id"],
        kind="low_battery",
        severity="medium",
        message="battery at 9%",
        raised_at=clock.now(),
    )
    bare = DeviceAlertResolved(
        organisation_id=raise_.organisation_id,
        alert_id=raise_.alert_id,
        device_id=raise_.device_id,
        kind=raise_.kind,
        resolved_at=clock.now(),
    )
    async with runtime(api).uow() as uow:
        assert await analytics.record_technical_alert(uow=uow, alert=raise_)
        await uow.commit()
    async with runtime(api).uow() as uow:
        await analytics.resolve_technical_alert(uow=uow, resolution=bare)
        await uow.commit()

    [alert] = await technical(api, cast.tokens["carol_clinician"])
    assert alert["resolved_at"] is not None


async def organisation_of(api: Api, cast: Cast, name: str) -> str:
    me = await api.http.get("/api/v1/users/me", headers=cast.auth(name))
    assert me.status_code == 200, me.text
    organisation: str = me.json()["organisation_id"]
    return organisation
