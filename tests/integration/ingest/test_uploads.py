"""Files of readings uploaded to object storage: stored whole, or quarantined with a report.

Most tests call the upload function's core directly, with the watcher off so it cannot take a
file first; others run the watcher, the Lambda entry point, and S3 (moto) as a gateway would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote_plus

import orjson
import pytest
from sqlalchemy import func, select

from medcloud.config import Settings
from medcloud.functions.uploads import UploadsFailed, handler
from medcloud.ingest.events import ReadingsCollected
from medcloud.ingest.intake import Intake
from medcloud.ingest.models import Reading
from medcloud.ingest.upload_files import Outcome, UploadOutcome, object_created_event
from medcloud.ingest.uploads import process_upload
from medcloud.platform.objects import ObjectStore
from medcloud.platform.runtime import Runtime
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.client import Api, bearer, eventually, now, reading, running
from tests.support.s3 import S3Service, moto_s3
from tests.support.waiting import consumed


def without_watcher(settings: Settings, poll: float = 0.0) -> Settings:
    ingest = settings.ingest.model_copy(update={"upload_poll_seconds": poll})
    return settings.model_copy(update={"ingest": ingest})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The usual deployment, its upload watcher off: these tests process files themselves."""
    return without_watcher(settings)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Service]:
    with moto_s3() as service:
        yield service


def runtime_of(api: Api) -> Runtime:
    value: Runtime = api.app.state.runtime
    return value


def objects_of(api: Api) -> ObjectStore:
    return runtime_of(api).objects


async def process(api: Api, key: str) -> UploadOutcome:
    runtime = runtime_of(api)
    intake = runtime.services.require(Intake)
    return await process_upload(key, objects=runtime.objects, intake=intake, clock=runtime.clock)


def ndjson(*readings: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in readings) + b"\n"


def minutes_ago(minutes: float) -> dt.datetime:
    return now() - dt.timedelta(minutes=minutes)


async def stored_readings(api: Api) -> int:
    async with runtime_of(api).read_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Reading)) or 0)


async def quarantine(api: Api, token: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get("/api/v1/quarantine", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def report(objects: ObjectStore, key: str) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(await objects.read_bytes(f"{key}.report.json"))
    return found


async def test_a_good_ndjson_file_is_stored_whole_and_raises_an_alert(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/2024-05-01T10:00:00Z.ndjson"
    body = ndjson(
        reading(minutes_ago(3), heart_rate=72, spo2=97),
        reading(minutes_ago(2), heart_rate=150),
        reading(minutes_ago(1), heart_rate=80),
    )
    objects = objects_of(api)
    await objects.put_bytes(key, body)

    outcome = await process(api, key)

    assert (outcome.outcome, outcome.readings, outcome.stored) == (Outcome.STORED, 3, 4)
    assert len(await api.readings(alice, device["id"])) == 4
    [alert] = await api.wait_for_alerts(alice, 1)
    assert alert["device_id"] == device["id"]
    assert not await objects.exists(key)
    assert await objects.read_bytes(f"processed/{device['id']}/2024-05-01T10:00:00Z.ndjson") == body


async def test_a_gzip_json_batch_is_stored(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/batch.json.gz"
    document = {"readings": [reading(minutes_ago(i), heart_rate=60 + i) for i in range(1, 11)]}
    await objects_of(api).put_bytes(key, gzip.compress(orjson.dumps(document)))

    outcome = await process(api, key)

    assert (outcome.outcome, outcome.stored) == (Outcome.STORED, 10)
    assert outcome.moved_to == f"processed/{device['id']}/batch.json.gz"
    assert len(await api.readings(alice, device["id"])) == 10


async def test_a_malformed_file_is_quarantined_with_a_report_and_nothing_is_stored(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/broken.json"
    await objects_of(api).put_bytes(key, b'{"readings": [{"timestamp": ')

    outcome = await process(api, key)

    assert outcome.outcome is Outcome.QUARANTINED
    objects = objects_of(api)
    moved = f"quarantine/{device['id']}/broken.json"
    assert await objects.read_bytes(moved) == b'{"readings": [{"timestamp": '
    assert not await objects.exists(key)
    written = await report(objects, moved)
    assert written["key"] == key and written["device_id"] == device["id"]
    assert written["outcome"] == "quarantined" and "none of its readings" in written["reason"]
    assert [error["field"] for error in written["errors"]] == ["body"]
    assert written["problems"] == 1 and written["quarantined_at"]
    assert await stored_readings(api) == 0
    [kept] = await quarantine(api, alice, device_id=device["id"])
    assert (kept["transport"], kept["field"]) == ("upload", "body")


async def test_a_file_that_is_not_the_gzip_it_claims_is_quarantined(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/readings.ndjson.gz"
    await objects_of(api).put_bytes(key, ndjson(reading(heart_rate=70)))

    outcome = await process(api, key)

    assert outcome.outcome is Outcome.QUARANTINED
    written = await report(objects_of(api), f"quarantine/{device['id']}/readings.ndjson.gz")
    assert "gzip" in written["errors"][0]["message"]
    assert await stored_readings(api) == 0


async def test_one_bad_reading_among_good_ones_stores_none_of_them(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/mixed.ndjson"
    body = ndjson(
        reading(minutes_ago(4), heart_rate=70),
        reading(minutes_ago(3), heart_rate=71),
        reading(minutes_ago(2), heart_rate=999),
        reading(minutes_ago(1), heart_rate=72),
    )
    await objects_of(api).put_bytes(key, body)

    outcome = await process(api, key)

    assert (outcome.outcome, outcome.readings, outcome.stored) == (Outcome.QUARANTINED, 4, 0)
    assert await stored_readings(api) == 0
    written = await report(objects_of(api), f"quarantine/{device['id']}/mixed.ndjson")
    assert [e["field"] for e in written["errors"]] == ["readings.2.measurements.heart_rate"]
    assert written["readings"] == 4
    [kept] = await quarantine(api, alice, device_id=device["id"])
    assert kept["field"] == "readings.2.measurements.heart_rate"
    assert kept["transport"] == "upload"


async def test_a_line_that_is_not_json_stores_none_of_the_file(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/torn.ndjson"
    body = ndjson(reading(minutes_ago(2), heart_rate=70)) + b'{"timestamp": "2024-\n'
    await objects_of(api).put_bytes(key, body)

    assert (await process(api, key)).outcome is Outcome.QUARANTINED
    assert await stored_readings(api) == 0
    [kept] = await quarantine(api, alice, device_id=device["id"])
    assert kept["field"] == "readings.1"


async def test_a_file_from_an_unknown_device_is_rejected(api: Api, alice: str) -> None:
    key = "uploads/no-such-device/readings.ndjson"
    await objects_of(api).put_bytes(key, ndjson(reading(heart_rate=70)))

    outcome = await process(api, key)

    assert outcome.outcome is Outcome.REJECTED
    written = await report(objects_of(api), "quarantine/no-such-device/readings.ndjson")
    assert written["reason"] == "unknown device"
    assert await objects_of(api).exists("quarantine/no-such-device/readings.ndjson")
    assert await stored_readings(api) == 0


async def test_a_file_from_a_decommissioned_device_is_rejected(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    retired = await api.http.patch(
        f"/api/v1/devices/{device['id']}", json={"decommissioned": True}, headers=bearer(alice)
    )
    assert retired.status_code == 200, retired.text
    key = f"uploads/{device['id']}/late.ndjson"
    await objects_of(api).put_bytes(key, ndjson(reading(minutes_ago(1), heart_rate=70)))

    outcome = await process(api, key)

    assert outcome.outcome is Outcome.REJECTED
    written = await report(objects_of(api), f"quarantine/{device['id']}/late.ndjson")
    assert written["reason"] == "the device is decommissioned"
    assert await stored_readings(api) == 0


async def test_a_file_of_another_kind_is_quarantined(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/readings.csv"
    await objects_of(api).put_bytes(key, b"timestamp,heart_rate\n")

    assert (await process(api, key)).outcome is Outcome.QUARANTINED
    [kept] = await quarantine(api, alice, device_id=device["id"])
    assert kept["field"] == "file"


async def test_processing_the_same_file_twice_is_harmless(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/again.ndjson"
    body = ndjson(reading(minutes_ago(2), heart_rate=150), reading(minutes_ago(1), heart_rate=70))
    objects = objects_of(api)
    await objects.put_bytes(key, body)
    first = await process(api, key)
    # The same event delivered again finds the file moved on.
    repeated = await process(api, key)
    # The gateway uploads the same file once more.
    await objects.put_bytes(key, body)
    resent = await process(api, key)

    assert (first.outcome, first.stored) == (Outcome.STORED, 2)
    assert repeated.outcome is Outcome.MISSING
    assert (resent.outcome, resent.stored, resent.duplicates) == (Outcome.STORED, 0, 2)
    assert len(await api.readings(alice, device["id"])) == 2
    await api.wait_for_alerts(alice, 1)
    # A second alert could only come from a readings event: once analytics has applied every
    # one there is, none is left that could raise it.
    await consumed(
        runtime_of(api),
        consumer="analytics.evaluate_readings",
        routing_key=ReadingsCollected.routing_key,
    )
    assert len(await api.alerts(alice)) == 1


async def test_outcomes_are_counted_on_metrics_and_no_reading_reaches_the_logs(
    api: Api, alice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    device = await api.register_device(alice)
    await objects_of(api).put_bytes(
        f"uploads/{device['id']}/secret-ward-name.ndjson", ndjson(reading(heart_rate=143))
    )
    await objects_of(api).put_bytes(f"uploads/{device['id']}/bad.json", b"[")
    capsys.readouterr()
    await process(api, f"uploads/{device['id']}/secret-ward-name.ndjson")
    await process(api, f"uploads/{device['id']}/bad.json")

    logged = capsys.readouterr().out
    assert "ingest.upload" in logged
    assert "secret-ward-name" not in logged
    # The value may well occur inside a random id; it must not be a logged value.
    values = re.findall(r"\w+=(\S+)", logged)
    assert values and "143" not in values and "143.0" not in values
    assert "heart_rate=" not in logged
    exposed = (await api.http.get("/metrics")).text
    assert 'ingest_uploads_total{outcome="stored"} 1.0' in exposed
    assert 'ingest_uploads_total{outcome="quarantined"} 1.0' in exposed


def export(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Put `settings` in the environment, where the Lambda entry point reads them."""
    values = {
        "VAR_DIR": str(settings.var_dir),
        "DATABASE_URL": settings.database_url,
        "BUS_URL": settings.bus_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        # bootstrap() applies the hashing cost process-wide; keep the suite's low one.
        "IDENTITY__ARGON2_TIME_COST": str(settings.identity.argon2_time_cost),
        "IDENTITY__ARGON2_MEMORY_KIB": str(settings.identity.argon2_memory_kib),
        "IDENTITY__ARGON2_PARALLELISM": str(settings.identity.argon2_parallelism),
        "OBJECTS__URL": settings.objects.url,
        "OBJECTS__ENDPOINT_URL": settings.objects.endpoint_url,
        "OBJECTS__REGION": settings.objects.region,
        "OBJECTS__ACCESS_KEY_ID": settings.objects.access_key_id,
    }
    secret = settings.objects.secret_access_key
    if secret is not None:
        values["OBJECTS__SECRET_ACCESS_KEY"] = secret.get_secret_value()
    for name, value in values.items():
        monkeypatch.setenv(f"MEDCLOUD_{name}", value)


async def test_the_lambda_handler_takes_an_s3_event_with_a_url_encoded_key(
    api: Api, alice: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/2024-05-01T10:00:00+02:00.ndjson"
    await objects_of(api).put_bytes(key, ndjson(reading(minutes_ago(1), heart_rate=150)))
    event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "local"},
                    "object": {
                        "key": f"uploads/{device['id']}/2024-05-01T10%3A00%3A00%2B02%3A00.ndjson",
                        "size": 80,
                    },
                },
            },
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete"},
        ]
    }
    export(monkeypatch, settings)

    summary = await asyncio.to_thread(handler, event, None)

    assert summary["records"] == 2
    assert (summary["stored"], summary["ignored"], summary["failed"]) == (1, 1, 0)
    assert len(await api.readings(alice, device["id"])) == 1
    # The server's relay publishes what the function committed, and analytics alerts.
    await api.wait_for_alerts(alice, 1)
    assert await objects_of(api).exists(
        f"processed/{device['id']}/2024-05-01T10:00:00+02:00.ndjson"
    )


async def test_the_lambda_handler_fails_so_that_the_event_is_retried(
    api: Api, alice: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await api.register_device(alice)
    key = f"uploads/{device['id']}/later.ndjson"
    await objects_of(api).put_bytes(key, ndjson(reading(heart_rate=70)))
    # A database nobody listens for: the function cannot get far.
    down = "postgresql+asyncpg://medcloud:medcloud@127.0.0.1:9/medcloud"
    broken = settings.model_copy(update={"database_url": down})
    export(monkeypatch, broken)

    with pytest.raises(UploadsFailed):
        await asyncio.to_thread(handler, object_created_event(key, bucket=None, prefix=""), None)
    assert await objects_of(api).exists(key)  # left for the retry


async def test_the_watcher_picks_up_a_file_dropped_in_uploads(settings: Settings) -> None:
    async with running(without_watcher(settings, poll=0.1)) as api:
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        device = await api.register_device(alice)
        objects = objects_of(api)
        await objects.put_bytes(
            f"uploads/{device['id']}/a.ndjson", ndjson(reading(minutes_ago(1), heart_rate=150))
        )
        await objects.put_bytes(f"uploads/{device['id']}/b.json", b"not json")

        async def both_moved() -> bool:
            return not await objects.list("uploads/")

        assert await eventually(both_moved)
        assert await objects.exists(f"processed/{device['id']}/a.ndjson")
        assert await objects.exists(f"quarantine/{device['id']}/b.json.report.json")
        assert len(await api.readings(alice, device["id"])) == 1
        await api.wait_for_alerts(alice, 1)


@pytest.fixture
async def s3_api(settings: Settings, s3: S3Service) -> AsyncIterator[tuple[Api, str]]:
    """The app with object storage in a moto bucket (prefix `medcloud`); yields it and the
    bucket."""
    bucket = s3.create_bucket()
    async with running(s3.settings(settings, bucket)) as api:
        yield api, bucket


async def test_a_file_put_in_an_s3_bucket_is_processed_by_the_lambda_handler(
    s3_api: tuple[Api, str], s3: S3Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, bucket = s3_api
    alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    device = await api.register_device(alice)
    good = f"medcloud/uploads/{device['id']}/2024-05-01T10:00:00Z.json.gz"
    bad = f"medcloud/uploads/{device['id']}/bad.ndjson"
    document = {"readings": [reading(minutes_ago(1), heart_rate=150)]}
    client = s3.client()
    # The gateway, writing straight to the bucket.
    client.put_object(Bucket=bucket, Key=good, Body=gzip.compress(orjson.dumps(document)))
    client.put_object(Bucket=bucket, Key=bad, Body=b"{nope}\n")
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:CompleteMultipartUpload",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
            }
            for key in (good, bad)
        ]
    }
    export(monkeypatch, runtime_of(api).settings)

    summary = await asyncio.to_thread(handler, event, None)

    assert (summary["stored"], summary["quarantined"]) == (1, 1)
    assert s3.keys(bucket) == sorted(
        [
            f"medcloud/processed/{device['id']}/2024-05-01T10:00:00Z.json.gz",
            f"medcloud/quarantine/{device['id']}/bad.ndjson",
            f"medcloud/quarantine/{device['id']}/bad.ndjson.report.json",
        ]
    )
    assert len(await api.readings(alice, device["id"])) == 1
    await api.wait_for_alerts(alice, 1)
    [kept] = await quarantine(api, alice, device_id=device["id"])
    assert kept["transport"] == "upload"
