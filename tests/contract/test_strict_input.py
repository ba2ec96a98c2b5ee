"""Input is read strictly: numbers are numbers, times carry a zone, a key is given once, text
and lists are bounded, and every refusal is a 422 problem naming the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import orjson
import pytest

from medcloud.platform.contract import RepeatedKey, check_unique_keys
from tests.support.client import HEALTHY_NEWS2, Api, bearer, now, reading

PATIENT = {
    "identifier_system": "urn:oid:2.16.840.1.113883.2.1.4.1",
    "identifier_value": "MRN-STRICT",
    "family_name": "Doe",
    "given_name": "Pat",
    "birth_date": "1948-03-02",
}
NEWS2 = HEALTHY_NEWS2


def refused(response: httpx.Response, field: str, status: int = 422) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [error["field"] for error in response.json()["errors"]], response.text


async def post_raw(api: Api, path: str, body: bytes, token: str) -> httpx.Response:
    return await api.http.post(
        path, content=body, headers=bearer(token) | {"content-type": "application/json"}
    )


# Repeated keys ---------------------------------------------------------------------------------


async def test_a_repeated_key_is_refused_by_name(api: Api, alice: str) -> None:
    body = orjson.dumps(PATIENT)[:-1] + b', "family_name": "Smith"}'
    refused(await post_raw(api, "/api/v1/patients", body, alice), "family_name")
    assert (await api.http.get("/api/v1/patients", headers=bearer(alice))).json()["items"] == []


async def test_a_repeated_key_hidden_by_an_escape_is_refused(api: Api, alice: str) -> None:
    body = orjson.dumps(PATIENT)[:-1] + b', "\\u0066amily_name": "Smith"}'
    refused(await post_raw(api, "/api/v1/patients", body, alice), "family_name")


async def test_a_repeated_key_in_a_nested_object_is_named_with_its_path(
    api: Api, alice: str
) -> None:
    body = (
        b'{"file_name": "pulseox.bin", "signature": null, "manifest": {"model": "PulseOx 2",'
        b' "version": "1.0", "expires_at": "2099-01-01T00:00:00Z", "version": "9.0"}}'
    )
    response = await post_raw(api, "/api/v1/device-models/any/firmware", body, alice)
    refused(response, "manifest.version")


async def test_a_reading_with_a_repeated_measurement_is_refused_and_not_stored(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    at = now().isoformat().encode()
    body = b'{"timestamp": "' + at + b'", "measurements": {"heart_rate": 70, "heart_rate": 190}}'
    response = await post_raw(api, f"/api/v1/devices/{device['id']}/data", body, device["token"])
    refused(response, "measurements.heart_rate")
    assert await api.readings(alice, device["id"]) == []


async def test_a_batch_names_the_reading_with_the_repeated_key(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    first, second = (orjson.dumps(reading(heart_rate=70 + i)) for i in range(2))
    second = second[:-1] + b', "timestamp": "2026-01-01T00:00:00Z"}'
    body = b'{"readings": [' + first + b", " + second + b"]}"
    response = await post_raw(api, f"/api/v1/devices/{device['id']}/data", body, device["token"])
    refused(response, "readings.1.timestamp")


async def test_ndjson_lines_are_checked_one_by_one(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    good = orjson.dumps(reading(heart_rate=70))
    bad = b'{"timestamp": "2026-01-01T00:00:00Z", "measurements": {"spo2": 97, "spo2": 99}}'
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=good + b"\n" + bad + b"\n",
        headers=bearer(device["token"]) | {"content-type": "application/x-ndjson"},
    )
    refused(response, "readings.1.measurements.spo2")


@pytest.mark.parametrize(
    ("text", "repeated"),
    [
        (b'{"a": 1, "a": 1}', "a"),
        (b'{"a": "x:y", "b": {"c": [1, {"d": 2, "d": 3}]}}', "b.c.1.d"),
        (b'[{"k": ":"}, {"k": 1, "k": 2}]', "1.k"),
        (b'{"a": 1, "\\u0061": 2}', "a"),
        (b'{"n": 123456789012345678901234567890, "n": 1}', "n"),
    ],
)
def test_check_unique_keys_finds_the_repeated_key(text: bytes, repeated: str) -> None:
    import json

    with pytest.raises(RepeatedKey) as refusal:
        check_unique_keys(text, json.loads(text))
    assert [error.field for error in refusal.value.errors] == [repeated]


@pytest.mark.parametrize(
    "text",
    [
        b'{"timestamp": "2026-11-30T10:00:00+01:00", "note": "a: b", "list": [{"a": 1}, {"a": 2}]}',
        b'{"a": "\\u003a", "b": ":"}',
        b'{"\\u00e9": 1, "e": 2}',
        b"[]",
        b'"a:b"',
    ],
)
def test_check_unique_keys_lets_documents_without_repeats_through(text: bytes) -> None:
    import json

    check_unique_keys(text, json.loads(text))


# Numbers, times, dates, text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"spo2": True}, "spo2"),
        ({"pulse": "72"}, "pulse"),
        ({"supplemental_oxygen": "false"}, "supplemental_oxygen"),
        ({"supplemental_oxygen": 0}, "supplemental_oxygen"),
        ({"spo2_scale": True}, "spo2_scale"),
        ({"spo2_scale": "2"}, "spo2_scale"),
        ({"spo2_scale": 1.5}, "spo2_scale"),
        ({"temperature": None}, "temperature"),
        ({"respiratory_rate": 16, "extra": 1}, "extra"),
    ],
)
async def test_numbers_and_flags_are_json_numbers_and_booleans(
    api: Api, alice: str, change: dict[str, Any], field: str
) -> None:
    response = await api.http.post(
        "/api/v1/analytics/news2", json=NEWS2 | change, headers=bearer(alice)
    )
    refused(response, field)


async def test_an_integer_may_be_written_with_a_zero_fraction(api: Api, alice: str) -> None:
    response = await api.http.post(
        "/api/v1/analytics/news2", json=NEWS2 | {"spo2_scale": 1.0}, headers=bearer(alice)
    )
    assert response.status_code == 200, response.text


async def test_nan_and_infinity_are_not_numbers(api: Api, alice: str) -> None:
    body = orjson.dumps(NEWS2).replace(b'"pulse":72', b'"pulse":NaN')
    refused(await post_raw(api, "/api/v1/analytics/news2", body, alice), "pulse")
    body = orjson.dumps(NEWS2).replace(b'"pulse":72', b'"pulse":Infinity')
    refused(await post_raw(api, "/api/v1/analytics/news2", body, alice), "pulse")


@pytest.mark.parametrize(
    "timestamp",
    [1_764_496_800, "1764496800", "2026-11-30T10:00:00", "2026-11-30", "2026-11-30 10:00:00Z"],
)
async def test_a_reading_time_is_an_rfc_3339_string_with_a_zone(
    api: Api, alice: str, timestamp: Any
) -> None:
    device = await api.register_device(alice)
    response = await api.send(device, {"timestamp": timestamp, "measurements": {"spo2": 97}})
    refused(response, "timestamp")


async def test_a_reading_time_in_any_zone_is_taken(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    at = (now() - dt.timedelta(minutes=1)).astimezone(dt.timezone(dt.timedelta(hours=-5)))
    response = await api.send(device, {"timestamp": at.isoformat(), "measurements": {"spo2": 97}})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("value", ["1764496800", "2026-11-30T10:00:00", "tomorrow"])
async def test_query_times_are_rfc_3339_too(api: Api, alice: str, value: str) -> None:
    response = await api.http.get("/api/v1/on-call", params={"start": value}, headers=bearer(alice))
    refused(response, "query.start")


@pytest.mark.parametrize(
    "birth_date", ["1899-12-31", "2999-01-01", "-718000000", "1948-03-02T00:00:00"]
)
async def test_a_birth_date_lies_between_1900_and_today(
    api: Api, alice: str, birth_date: str
) -> None:
    response = await api.http.post(
        "/api/v1/patients", json=PATIENT | {"birth_date": birth_date}, headers=bearer(alice)
    )
    refused(response, "birth_date")


async def test_a_child_born_today_anywhere_is_registered(api: Api, alice: str) -> None:
    # Kiribati is at UTC+14: its today may be tomorrow in UTC.
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=14))).date().isoformat()
    response = await api.http.post(
        "/api/v1/patients", json=PATIENT | {"birth_date": today}, headers=bearer(alice)
    )
    assert response.status_code == 201, response.text


async def test_a_birth_date_as_a_number_is_refused(api: Api, alice: str) -> None:
    response = await api.http.post(
        "/api/v1/patients", json=PATIENT | {"birth_date": -718_000_000}, headers=bearer(alice)
    )
    refused(response, "birth_date")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"family_name": "x" * 101}, "family_name"),
        ({"family_name": "x" * 100 + " "}, "family_name"),
        ({"family_name": "Do\x00e"}, "family_name"),
        ({"family_name": "Do\ne"}, "family_name"),
        ({"given_name": ""}, "given_name"),
        ({"given_name": "   "}, "given_name"),
        ({"identifier_value": " MRN-1"}, "identifier_value"),
        ({"identifier_value": 12345}, "identifier_value"),
        ({"ward_id": "w" * 65}, "ward_id"),
        ({"role": "admin"}, "role"),
    ],
)
async def test_text_is_bounded_and_unknown_fields_refused(
    api: Api, alice: str, change: dict[str, Any], field: str
) -> None:
    response = await api.http.post("/api/v1/patients", json=PATIENT | change, headers=bearer(alice))
    refused(response, field)


async def test_names_are_trimmed_and_kept_once(api: Api, alice: str) -> None:
    response = await api.http.post(
        "/api/v1/patients",
        json=PATIENT | {"family_name": "  Doe\n", "given_name": "Pat "},
        headers=bearer(alice),
    )
    assert response.status_code == 201, response.text
    assert (response.json()["family_name"], response.json()["given_name"]) == ("Doe", "Pat")


async def test_lists_are_bounded(api: Api, alice: str) -> None:
    response = await api.http.post(
        "/api/v1/users",
        json={"email": "nina@stmary.example", "role": "nurse", "ward_ids": ["w"] * 51},
        headers=bearer(alice),
    )
    refused(response, "ward_ids")


# Media types and methods -----------------------------------------------------------------------


async def test_a_json_body_sent_as_something_else_is_415(api: Api, alice: str) -> None:
    response = await api.http.post(
        "/api/v1/wards",
        content=b'{"name": "Cardiology"}',
        headers=bearer(alice) | {"content-type": "text/plain"},
    )
    refused(response, "header.content-type", status=415)


async def test_a_wrong_method_names_every_method_of_the_path(api: Api, alice: str) -> None:
    response = await api.http.delete("/api/v1/users", headers=bearer(alice))
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["allow"] == "GET, POST"
    response = await api.http.put("/api/v1/devices/some-id", headers=bearer(alice))
    assert response.headers["allow"] == "GET, PATCH"
