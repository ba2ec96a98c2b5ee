"""The slice end to end: a device sends readings, they are stored, and analytics raises alerts."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support.client import Api, bearer, eventually, now, reading


async def test_a_single_reading_is_stored_and_listed_newest_first(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    earlier = now() - dt.timedelta(seconds=30)
    assert (await api.send(device, reading(earlier, heart_rate=70))).status_code == 201
    response = await api.send(device, reading(heart_rate=72, spo2=97))
    assert response.status_code == 201
    assert response.json() == {
        "device_id": device["id"],
        "accepted": 2,
        "stored": 2,
        "duplicates": 0,
    }

    items = await api.readings(alice, device["id"])
    assert [(i["type"], i["value"]) for i in items][-1] == ("heart_rate", 70)
    assert {i["type"] for i in items[:2]} == {"heart_rate", "spo2"}
    assert items[0]["timestamp"] >= items[-1]["timestamp"]
    assert {i["unit"] for i in items} == {"/min", "%"}


async def test_a_batch_is_stored_whole(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    start = now() - dt.timedelta(minutes=10)
    batch = [reading(start + dt.timedelta(seconds=i), heart_rate=60 + i) for i in range(50)]
    response = await api.send(device, {"readings": batch})
    assert response.status_code == 201
    assert response.json()["stored"] == 50
    assert len(await api.readings(alice, device["id"], limit=1000)) == 50


async def test_time_range_and_paging_return_every_reading_once(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    start = now() - dt.timedelta(hours=1)
    batch = [reading(start + dt.timedelta(seconds=i), heart_rate=60) for i in range(25)]
    await api.send(device, {"readings": batch})

    in_range = await api.readings(
        alice,
        device["id"],
        start=(start + dt.timedelta(seconds=5)).isoformat(),
        end=(start + dt.timedelta(seconds=15)).isoformat(),
    )
    assert len(in_range) == 10

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        response = await api.http.get(
            f"/api/v1/devices/{device['id']}/data", params=params, headers=bearer(alice)
        )
        page = response.json()
        seen += [item["timestamp"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 25 and len(set(seen)) == 25 and seen == sorted(seen, reverse=True)


@pytest.mark.parametrize("size", [1, 4, 7])
async def test_paging_a_device_of_several_types_returns_every_reading_once_newest_first(
    api: Api, alice: str, size: int
) -> None:
    # Three series share every instant: a page may end between two readings of one instant.
    device = await api.register_device(alice)
    start = now() - dt.timedelta(hours=1)
    batch = [
        reading(start + dt.timedelta(seconds=i), heart_rate=60 + i, spo2=90 + i % 9, temperature=37)
        for i in range(9)
    ]
    await api.send(device, {"readings": batch})

    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        params = {"limit": size} | ({"cursor": cursor} if cursor else {})
        response = await api.http.get(
            f"/api/v1/devices/{device['id']}/data", params=params, headers=bearer(alice)
        )
        page = response.json()
        seen += [(item["timestamp"], item["type"]) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 27 and len(set(seen)) == 27
    assert [t for t, _ in seen] == sorted((t for t, _ in seen), reverse=True)


async def test_a_resent_batch_is_stored_once(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    batch = {"readings": [reading(now() - dt.timedelta(seconds=1), heart_rate=150)]}
    first = await api.send(device, batch)
    again = await api.send(device, batch)
    assert first.json()["stored"] == 1
    assert again.status_code == 201
    assert again.json() == {"device_id": device["id"], "accepted": 1, "stored": 0, "duplicates": 1}
    assert len(await api.readings(alice, device["id"])) == 1
    alerts = await api.wait_for_alerts(alice, 1)
    assert len(alerts) == 1


async def test_abnormal_heart_rates_raise_alerts_and_normal_ones_do_not(
    api: Api, alice: str
) -> None:
    patient_id = await api.create_patient(alice)
    device = await api.register_device(alice, patient_id=patient_id)
    # Taken after the assignment, so they are the patient's (see the registry tests).
    t = now()
    batch = [
        reading(t, heart_rate=72),
        reading(t + dt.timedelta(seconds=1), heart_rate=121),
        reading(t + dt.timedelta(seconds=2), heart_rate=39),
        reading(t + dt.timedelta(seconds=3), heart_rate=120, spo2=97),
        reading(t + dt.timedelta(seconds=4), heart_rate=40),
    ]
    assert (await api.send(device, {"readings": batch})).status_code == 201

    alerts = await api.wait_for_alerts(alice, 2)
    assert sorted((a["rule"], a["value"]) for a in alerts) == [
        ("heart_rate_high", 121),
        ("heart_rate_low", 39),
    ]
    alert = alerts[0]
    assert alert["device_id"] == device["id"]
    assert alert["patient_id"] == patient_id
    assert alert["measurement"] == "heart_rate"
    assert {"reading_timestamp", "raised_at", "threshold", "severity"} <= alert.keys()


async def test_alerts_can_be_filtered_by_device(api: Api, alice: str) -> None:
    first = await api.register_device(alice, serial="A-1")
    second = await api.register_device(alice, serial="A-2")
    await api.send(first, reading(heart_rate=130))
    await api.send(second, reading(heart_rate=30))
    await api.wait_for_alerts(alice, 2)
    only_second = await api.alerts(alice, device_id=second["id"])
    assert [a["device_id"] for a in only_second] == [second["id"]]


async def test_readings_mark_their_device_as_seen(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    await api.send(device, reading(heart_rate=80))

    async def last_seen() -> str | None:
        response = await api.http.get(f"/api/v1/devices/{device['id']}", headers=bearer(alice))
        value: str | None = response.json()["last_seen_at"]
        return value

    assert await eventually(last_seen) is not None
