"""Collecting readings: units, quarantine, clock drift, NDJSON, gzip, idempotency, backpressure."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from medcloud.ingest.models import QuarantinedReading, Reading
from medcloud.ingest.writer import Backlogged, ReadingWriter
from tests.support.client import Api, bearer, now, reading


async def post(api: Api, device: dict[str, Any], content: bytes, **headers: str) -> httpx.Response:
    return await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=content,
        headers=bearer(device["token"]) | headers,
    )


async def count(api: Api, model: Any) -> int:
    async with api.app.state.runtime.read_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def quarantine(api: Api, token: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get("/api/v1/quarantine", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_values_sent_in_other_units_are_stored_in_the_catalogue_unit(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    body = reading(
        temperature={"value": 98.6, "unit": "[degF]"},  # type: ignore[arg-type]
        glucose={"value": 90.08, "unit": "mg/dL"},  # type: ignore[arg-type]
        systolic_bp={"value": 16, "unit": "kPa"},  # type: ignore[arg-type]
        heart_rate=72,
    )
    response = await api.send(device, body)
    assert response.status_code == 201, response.text
    stored = {
        i["type"]: (round(i["value"], 2), i["unit"])
        for i in await api.readings(alice, device["id"])
    }
    assert stored == {
        "temperature": (37.0, "Cel"),
        "glucose": (5.0, "mmol/L"),
        "systolic_bp": (120.01, "mm[Hg]"),
        "heart_rate": (72.0, "/min"),
    }


async def test_an_unknown_unit_is_refused_named_and_kept_in_quarantine(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    body = reading(temperature={"value": 310, "unit": "[degR]"})  # type: ignore[arg-type]
    response = await api.send(device, body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "measurements.temperature"
    assert "[degR]" in error["message"]
    assert await count(api, Reading) == 0
    [kept] = await quarantine(api, alice)
    assert kept["device_id"] == device["id"]
    assert kept["field"] == "measurements.temperature"
    assert "[degR]" in kept["reason"] and "[degR]" in kept["payload"]


async def test_a_refused_batch_stores_nothing_but_every_bad_reading_can_be_found(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    t = now() - dt.timedelta(minutes=1)
    batch = [reading(t + dt.timedelta(seconds=i), heart_rate=70) for i in range(5)]
    batch[1]["measurements"]["spo2"] = 140
    batch[3]["measurements"]["blood_alcohol"] = 0.1
    response = await api.send(device, {"readings": batch})
    assert response.status_code == 422
    assert await count(api, Reading) == 0
    kept = await quarantine(api, alice, device_id=device["id"])
    assert sorted(k["field"] for k in kept) == [
        "readings.1.measurements.spo2",
        "readings.3.measurements.blood_alcohol",
    ]
    spo2 = next(k for k in kept if k["field"].endswith("spo2"))
    assert "possible range" in spo2["reason"]
    assert orjson.loads(spo2["payload"])["measurements"]["spo2"] == 140
    metrics = (await api.http.get("/metrics")).text
    assert 'readings_rejected_total{reason="out_of_range",transport="http"} 1.0' in metrics
    assert 'readings_rejected_total{reason="unknown_type",transport="http"} 1.0' in metrics


async def test_malformed_json_from_a_device_is_kept_in_quarantine(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await post(
        api, device, b'{"timestamp": "2026-', **{"content-type": "application/json"}
    )
    assert response.status_code == 400
    [kept] = await quarantine(api, alice)
    assert kept["field"] == "body" and kept["payload"] == '{"timestamp": "2026-'


async def test_old_timestamps_are_stored_but_flagged_as_clock_drift(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    old = now() - dt.timedelta(days=3)
    batch = [reading(old, heart_rate=70), reading(now() - dt.timedelta(seconds=5), heart_rate=71)]
    assert (await api.send(device, {"readings": batch})).status_code == 201
    flags = {i["value"]: i["clock_drift"] for i in await api.readings(alice, device["id"])}
    assert flags == {70.0: True, 71.0: False}
    metrics = (await api.http.get("/metrics")).text
    assert 'readings_clock_drift_total{transport="http"} 1.0' in metrics


async def test_an_ndjson_batch_is_stored_whole(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    t = now() - dt.timedelta(minutes=5)
    lines = [
        orjson.dumps(reading(t + dt.timedelta(seconds=i), heart_rate=60 + i)) for i in range(20)
    ]
    response = await post(
        api, device, b"\n".join(lines) + b"\n", **{"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["stored"] == 20


async def test_a_bad_ndjson_line_is_named_and_nothing_is_stored(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    good = orjson.dumps(reading(heart_rate=70))
    body = b"\n".join([good, b'{"timestamp": oops', good.replace(b"70", b"700")])
    response = await post(api, device, body, **{"content-type": "application/x-ndjson"})
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["readings.1"]
    assert await count(api, Reading) == 0


async def test_a_gzip_batch_is_inflated_and_stored(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    t = now() - dt.timedelta(minutes=5)
    batch = {"readings": [reading(t + dt.timedelta(seconds=i), spo2=97) for i in range(100)]}
    response = await post(
        api,
        device,
        gzip.compress(orjson.dumps(batch)),
        **{"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["stored"] == 100


async def test_a_zip_bomb_is_413_without_inflating_it(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    bomb = gzip.compress(b" " * (80 * 1024 * 1024), compresslevel=9)  # ~80 KB on the wire
    response = await post(
        api, device, bomb, **{"content-type": "application/json", "content-encoding": "gzip"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await count(api, Reading) == 0


async def test_an_unknown_content_encoding_is_415(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await post(
        api, device, b"x", **{"content-type": "application/json", "content-encoding": "br"}
    )
    assert response.status_code == 415


async def test_an_idempotency_key_replays_the_answer_and_refuses_another_body(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    body = orjson.dumps(reading(now() - dt.timedelta(seconds=1), heart_rate=70))
    headers = {"content-type": "application/json", "idempotency-key": "batch-0001"}
    first = await post(api, device, body, **headers)
    again = await post(api, device, body, **headers)
    assert first.status_code == again.status_code == 201
    assert (
        again.json()
        == first.json()
        == {
            "device_id": device["id"],
            "accepted": 1,
            "stored": 1,
            "duplicates": 0,
        }
    )
    other = orjson.dumps(reading(now(), heart_rate=71))
    refused = await post(api, device, other, **headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "header.idempotency-key"
    assert await count(api, Reading) == 1


async def test_a_full_writer_answers_503_with_retry_after(
    api: Api, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await api.register_device(alice)

    async def full(*_args: object, **_kwargs: object) -> list[object]:
        raise Backlogged("full")

    monkeypatch.setattr(ReadingWriter, "submit", full)
    response = await api.send(device, reading(heart_rate=70))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert await count(api, Reading) == 0


async def test_concurrent_requests_share_batches_and_each_is_answered_after_commit(
    api: Api, alice: str
) -> None:
    devices = [await api.register_device(alice, serial=f"MB-{i}") for i in range(4)]
    t = now() - dt.timedelta(minutes=10)

    async def send(device: dict[str, Any], offset: int) -> httpx.Response:
        batch = [
            reading(t + dt.timedelta(seconds=offset * 10 + i), heart_rate=80) for i in range(10)
        ]
        return await api.send(device, {"readings": batch})

    responses = await asyncio.gather(*(send(d, n) for d in devices for n in range(5)))
    assert all(r.status_code == 201 and r.json()["stored"] == 10 for r in responses)
    assert await count(api, Reading) == 200
    # A retry of everything stores nothing twice.
    again = await asyncio.gather(*(send(d, n) for d in devices for n in range(5)))
    assert sum(r.json()["duplicates"] for r in again) == 200
    assert await count(api, Reading) == 200
    assert await count(api, QuarantinedReading) == 0


async def test_binary_garbage_is_refused_and_kept_legibly(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    garbage = gzip.compress(b'{"timestamp": "2026-11-30T10:00:00Z"}') + b"\x00\xff"
    response = await post(api, device, garbage, **{"content-type": "application/json"})
    assert response.status_code == 400
    [kept] = await quarantine(api, alice)
    assert kept["field"] == "body" and "\x00" not in kept["payload"]
