"""Reading data back: latest per patient, downsampled ranges, quarantine — each in care scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.support.cast import Cast
from tests.support.client import Api, bearer, now, reading


async def test_latest_values_per_patient_and_type(api: Api, alice: str) -> None:
    patient_id = await api.create_patient(alice)
    oximeter = await api.register_device(alice, serial="OX", patient_id=patient_id)
    cuff = await api.register_device(alice, serial="BP", patient_id=patient_id)
    # Taken after the devices were assigned: earlier readings would belong to nobody.
    t = now()
    await api.send(
        oximeter, {"readings": [reading(t, spo2=95), reading(t + dt.timedelta(minutes=1), spo2=97)]}
    )
    await api.send(cuff, reading(t, systolic_bp=130, diastolic_bp=85))
    response = await api.http.get(f"/api/v1/readings/latest/{patient_id}", headers=bearer(alice))
    assert response.status_code == 200, response.text
    latest = {i["type"]: (i["value"], i["device_id"]) for i in response.json()["items"]}
    assert latest == {
        "spo2": (97.0, oximeter["id"]),
        "systolic_bp": (130.0, cuff["id"]),
        "diastolic_bp": (85.0, cuff["id"]),
    }


async def test_a_week_of_one_hertz_data_is_downsampled_to_at_most_1000_points(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    end = now().replace(microsecond=0)
    start = end - dt.timedelta(days=7)
    # Sparse, but spread over the week; the bucket size depends on the range, not the rows.
    batch = [
        reading(start + dt.timedelta(minutes=16 * i), heart_rate=60 + i % 40) for i in range(600)
    ]
    assert (await api.send(device, {"readings": batch})).status_code == 201
    response = await api.http.get(
        f"/api/v1/devices/{device['id']}/data/buckets",
        params={"start": start.isoformat(), "end": end.isoformat(), "bucket": 1},
        headers=bearer(alice),
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["bucket_seconds"] >= 7 * 86_400 / 1000
    items = page["items"]
    assert 0 < len(items) <= 1001
    assert sum(i["count"] for i in items) == 600
    assert all(i["min"] <= i["avg"] <= i["max"] for i in items)
    assert min(i["min"] for i in items) == 60 and max(i["max"] for i in items) == 99


async def test_buckets_aggregate_min_max_avg(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    base = (now() - dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    batch = [
        reading(base + dt.timedelta(seconds=10 * i), heart_rate=v)
        for i, v in enumerate([60, 70, 80])
    ]
    await api.send(device, {"readings": batch})
    response = await api.http.get(
        f"/api/v1/devices/{device['id']}/data/buckets",
        params={
            "start": base.isoformat(),
            "end": (base + dt.timedelta(minutes=1)).isoformat(),
            "bucket": 60,
        },
        headers=bearer(alice),
    )
    [bucket] = response.json()["items"]
    assert (bucket["min"], bucket["max"], bucket["avg"], bucket["count"]) == (60, 80, 70, 3)
    assert bucket["start"].startswith(base.isoformat()[:16])


async def rejected(api: Api, cast: Cast, device: str) -> None:
    bad = reading(heart_rate=900)
    response = await api.send(cast.devices[device], bad)
    assert response.status_code == 422


async def listed(api: Api, cast: Cast, who: str) -> list[dict[str, Any]]:
    response = await api.http.get("/api/v1/quarantine", headers=cast.auth(who))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_quarantine_is_scoped_like_the_devices_and_payloads_like_readings(
    api: Api, cast: Cast
) -> None:
    await rejected(api, cast, "peters_oximeter")
    await rejected(api, cast, "olives_monitor")
    peters = cast.devices["peters_oximeter"]["id"]
    olives = cast.devices["olives_monitor"]["id"]

    admin = await listed(api, cast, "alice_admin")
    assert {i["device_id"] for i in admin} == {peters, olives}
    assert all("900" in i["payload"] for i in admin)

    carol = await listed(api, cast, "carol_clinician")
    assert [i["device_id"] for i in carol] == [peters]

    tess = await listed(api, cast, "tess_technician")
    assert {i["device_id"] for i in tess} == {peters, olives}
    assert all(i["payload"] is None and "possible range" in i["reason"] for i in tess)

    assert await listed(api, cast, "mallory_other_org") == []
    auditor = await api.http.get("/api/v1/quarantine", headers=cast.auth("audrey_auditor"))
    assert auditor.status_code == 403


async def test_latest_values_of_another_wards_patient_are_not_found(api: Api, cast: Cast) -> None:
    peter = cast.patients["peter"]["id"]
    await api.send(cast.devices["peters_oximeter"], reading(spo2=96))
    mine = await api.http.get(
        f"/api/v1/readings/latest/{peter}", headers=cast.auth("carol_clinician")
    )
    assert [i["value"] for i in mine.json()["items"]] == [96.0]
    for who in ("bob_other_ward", "mallory_clinician"):
        response = await api.http.get(f"/api/v1/readings/latest/{peter}", headers=cast.auth(who))
        assert response.status_code == 404, who
