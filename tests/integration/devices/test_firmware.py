"""Firmware images: only what the manufacturer signed, for this model, unexpired, is accepted;
and no device is ever offered a version older than its own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.platform.clock import FrozenClock
from tests.integration.devices.fleet import (
    MANUFACTURER,
    MODEL,
    Vendor,
    announce,
    manifest,
    register_model,
    release,
    signature,
    start_campaign,
    upload,
)
from tests.support.client import Api, bearer

CONTENT = b"\x7fELF firmware image" * 512


def fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


async def device_on(api: Api, token: str, version: str, serial: str = "PO3-1") -> dict[str, Any]:
    response = await api.http.post(
        "/api/v1/devices",
        json={
            "serial_number": serial,
            "model": MODEL,
            "manufacturer": MANUFACTURER,
            "firmware_version": version,
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def offer(api: Api, device: dict[str, Any]) -> httpx.Response:
    return await api.http.get(
        f"/api/v1/devices/{device['id']}/firmware/update", headers=bearer(device["token"])
    )


@pytest.fixture
async def vendor(api: Api, alice_admin: str) -> Vendor:
    return await register_model(api, alice_admin)


async def test_a_signed_image_is_stored_with_its_digest(
    api: Api, alice_admin: str, vendor: Vendor
) -> None:
    terms = manifest("2.0.0")
    announced = await announce(
        api, alice_admin, vendor, terms, signature(vendor.key, CONTENT, terms)
    )
    assert announced.status_code == 201, announced.text
    assert announced.json()["status"] == "pending"
    uploaded = await upload(api, alice_admin, vendor, "2.0.0", CONTENT)
    assert uploaded.status_code == 200, uploaded.text
    image = uploaded.json()
    assert image["status"] == "verified"
    assert image["size_bytes"] == len(CONTENT)
    again = await upload(api, alice_admin, vendor, "2.0.0", CONTENT)
    assert again.status_code == 409


async def test_a_tampered_image_is_rejected(api: Api, alice_admin: str, vendor: Vendor) -> None:
    terms = manifest("2.0.0")
    await announce(api, alice_admin, vendor, terms, signature(vendor.key, CONTENT, terms))
    tampered = CONTENT[:-1] + b"\x00"
    response = await upload(api, alice_admin, vendor, "2.0.0", tampered)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert fields(response) == ["signature"]
    # Still pending: the genuine bytes may follow.
    assert (await upload(api, alice_admin, vendor, "2.0.0", CONTENT)).status_code == 200


async def test_an_image_signed_by_another_key_is_rejected(
    api: Api, alice_admin: str, vendor: Vendor
) -> None:
    terms = manifest("2.0.0")
    forger = Ed25519PrivateKey.generate()
    await announce(api, alice_admin, vendor, terms, signature(forger, CONTENT, terms))
    response = await upload(api, alice_admin, vendor, "2.0.0", CONTENT)
    assert response.status_code == 422
    assert fields(response) == ["signature"]


async def test_a_manifest_altered_after_signing_is_rejected(
    api: Api, alice_admin: str, vendor: Vendor
) -> None:
    signed = manifest("2.0.0")
    altered = {**signed, "min_version": "0.1"}
    await announce(api, alice_admin, vendor, altered, signature(vendor.key, CONTENT, signed))
    response = await upload(api, alice_admin, vendor, "2.0.0", CONTENT)
    assert response.status_code == 422
    assert fields(response) == ["signature"]


async def test_an_unsigned_image_is_rejected(api: Api, alice_admin: str, vendor: Vendor) -> None:
    response = await announce(api, alice_admin, vendor, manifest("2.0.0"), None)
    assert response.status_code == 422
    assert fields(response) == ["signature"]
    assert "unsigned" in response.json()["detail"]


async def test_an_expired_manifest_is_rejected(
    api: Api, alice_admin: str, vendor: Vendor, clock: FrozenClock
) -> None:
    terms = manifest("2.0.0", expires_at=clock.now() - dt.timedelta(minutes=1))
    response = await announce(
        api, alice_admin, vendor, terms, signature(vendor.key, CONTENT, terms)
    )
    assert response.status_code == 422
    assert fields(response) == ["manifest.expires_at"]


async def test_a_manifest_that_expires_before_the_upload_is_rejected(
    api: Api, alice_admin: str, vendor: Vendor, clock: FrozenClock
) -> None:
    terms = manifest("2.0.0", expires_at=clock.now() + dt.timedelta(minutes=5))
    await announce(api, alice_admin, vendor, terms, signature(vendor.key, CONTENT, terms))
    clock.advance(minutes=6)  # within the admin token's life
    response = await upload(api, alice_admin, vendor, "2.0.0", CONTENT)
    assert response.status_code == 422
    assert fields(response) == ["manifest.expires_at"]


async def test_an_image_for_another_model_is_rejected(
    api: Api, alice_admin: str, vendor: Vendor
) -> None:
    terms = manifest("2.0.0", model="BedsideMonitor 9")
    response = await announce(
        api, alice_admin, vendor, terms, signature(vendor.key, CONTENT, terms)
    )
    assert response.status_code == 422
    assert fields(response) == ["manifest.model"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.bin", "..\\evil.bin", ".hidden"])
async def test_a_path_like_file_name_is_rejected(
    api: Api, alice_admin: str, vendor: Vendor, name: str
) -> None:
    terms = manifest("2.0.0")
    response = await announce(
        api, alice_admin, vendor, terms, signature(vendor.key, CONTENT, terms), file_name=name
    )
    assert response.status_code == 422
    assert fields(response) == ["file_name"]


async def test_an_image_over_the_size_limit_is_refused(
    api: Api, alice_admin: str, vendor: Vendor
) -> None:
    limit = api.app.state.runtime.settings.devices.firmware_max_bytes
    terms = manifest("2.0.0")
    big = b"x" * (limit + 1)
    await announce(api, alice_admin, vendor, terms, signature(vendor.key, big, terms))
    response = await upload(api, alice_admin, vendor, "2.0.0", big)
    assert response.status_code == 413


async def test_a_downgrade_is_never_offered(api: Api, alice_admin: str, vendor: Vendor) -> None:
    newer = await device_on(api, alice_admin, "3.0.0", "PO3-NEW")
    older = await device_on(api, alice_admin, "1.0.0", "PO3-OLD")
    image = await release(api, alice_admin, vendor, "2.0.0")

    rollout = await start_campaign(api, alice_admin, vendor, image, waves=[100])

    assert rollout["targets"] == {"pending": 1}
    assert (await offer(api, newer)).status_code == 204
    offered = await offer(api, older)
    assert offered.status_code == 200
    assert offered.json()["version"] == "2.0.0"


async def test_a_device_that_moved_past_the_image_is_skipped_not_downgraded(
    api: Api, alice_admin: str, vendor: Vendor
) -> None:
    device = await device_on(api, alice_admin, "1.0.0")
    image = await release(api, alice_admin, vendor, "2.0.0")
    rollout = await start_campaign(api, alice_admin, vendor, image, waves=[100])
    # Updated some other way (a service engineer on site) before it checked in.
    await api.http.post(
        f"/api/v1/devices/{device['id']}/heartbeat",
        json={"firmware_version": "2.5.0"},
        headers=bearer(device["token"]),
    )
    assert (await offer(api, device)).status_code == 204
    state = await api.http.get(f"/api/v1/campaigns/{rollout['id']}", headers=bearer(alice_admin))
    assert state.json()["targets"] == {"skipped": 1}
    assert state.json()["status"] == "completed"


async def test_a_device_below_the_minimum_version_is_not_targeted(
    api: Api, alice_admin: str, vendor: Vendor
) -> None:
    await device_on(api, alice_admin, "1.0.0", "PO3-ANCIENT")
    await device_on(api, alice_admin, "1.5.0", "PO3-RECENT")
    image = await release(api, alice_admin, vendor, "2.0.0", min_version="1.5")
    rollout = await start_campaign(api, alice_admin, vendor, image, waves=[100])
    assert rollout["targets"] == {"pending": 1}
