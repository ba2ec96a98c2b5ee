"""Health, readiness, metrics, request ids and logs that keep patient data out."""

from __future__ import annotations

import json

import pytest

from medcloud.config import Settings
from tests.support.client import Api, bearer, reading, running


async def test_health_answers_while_alive(api: Api) -> None:
    response = await api.http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_checks_database_bus_and_cache(api: Api) -> None:
    response = await api.http.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "bus": "ok", "cache": "ok"}


async def test_ready_is_503_naming_what_is_down(api: Api) -> None:
    runtime = api.app.state.runtime

    async def down() -> None:
        raise ConnectionError("gone")

    runtime.cache.ping = down
    response = await api.http.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "cache" in response.json()["detail"]
    assert response.headers["retry-after"]


async def test_every_response_carries_a_request_id_and_the_version(api: Api) -> None:
    generated = await api.http.get("/health")
    assert len(generated.headers["x-request-id"]) == 36
    assert generated.headers["x-service-version"].startswith("medcloud/")
    echoed = await api.http.get("/nope", headers={"X-Request-ID": "req-1234"})
    assert echoed.headers["x-request-id"] == "req-1234"
    assert echoed.json()["request_id"] == "req-1234"
    unsafe = await api.http.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_metrics_use_route_templates_not_raw_paths(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    await api.send(device, reading(heart_rate=70))
    text = (await api.http.get("/metrics")).text
    series = 'endpoint="/api/v1/devices/{device_id}/data",method="POST",status="201"'
    assert f"http_requests_total{{{series}}} 1.0" in text
    assert device["id"] not in text
    assert "http_request_duration_seconds_bucket" in text
    assert "active_devices_total" in text
    assert 'readings_ingested_total{transport="http"} 1.0' in text


async def test_logs_are_json_with_request_ids_and_no_patient_data(
    api: Api, alice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from medcloud.platform.logging import configure_logging

    configure_logging("DEBUG")
    patient_id = await api.create_patient(alice, identifier="MRN-SECRET-77")
    device = await api.register_device(alice, patient_id=patient_id)
    capsys.readouterr()
    await api.send(device, reading(heart_rate=187))
    await api.wait_for_alerts(alice, 1)
    await api.readings(alice, device["id"])
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "http.request" and line.get("request_id") for line in lines)
    for forbidden in (device["token"], alice, "MRN-SECRET-77", "Doe"):
        assert forbidden not in out
    # The value may well occur inside a random id or a timing; it must not be a logged value.
    logged = [value for line in lines for value in line.values()]
    assert 187 not in logged and "187" not in logged
    assert not any(key in line for line in lines for key in ("value", "measurements"))


async def test_a_server_can_mount_just_one_context(settings: Settings) -> None:
    async with running(settings, contexts=["ingest"], workers=False) as api:
        paths = set(api.app.openapi()["paths"])
        assert "/api/v1/devices/{device_id}/data" in paths
        assert "/api/v1/alerts" not in paths
        assert "/api/v1/devices" not in paths
        assert (await api.http.get("/api/v1/alerts", headers=bearer("x"))).status_code == 404
