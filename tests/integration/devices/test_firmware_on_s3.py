"""Firmware images kept in an S3-compatible bucket instead of the local directory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from medcloud.config import Settings
from tests.integration.devices.fleet import (
    Vendor,
    announce,
    manifest,
    register_model,
    release,
    signature,
    start_campaign,
    upload,
)
from tests.integration.devices.test_firmware import device_on, offer
from tests.support.client import Api, bearer
from tests.support.s3 import S3Service, moto_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Service]:
    with moto_s3() as service:
        yield service


@pytest.fixture
def bucket(s3: S3Service) -> str:
    return s3.create_bucket()


@pytest.fixture
def settings(settings: Settings, s3: S3Service, bucket: str) -> Settings:
    """The usual deployment, with object storage in a bucket of its own."""
    return s3.settings(settings, bucket, prefix="stmary")


@pytest.fixture
async def vendor(api: Api, alice_admin: str) -> Vendor:
    return await register_model(api, alice_admin)


async def test_a_released_image_is_kept_in_the_bucket_and_downloaded_whole(
    api: Api, alice_admin: str, vendor: Vendor, s3: S3Service, bucket: str
) -> None:
    device = await device_on(api, alice_admin, "1.0.0")
    image_id = await release(api, alice_admin, vendor, "2.0.0")
    [key] = s3.keys(bucket)
    assert key.startswith("stmary/firmware/")

    await start_campaign(api, alice_admin, vendor, image_id, waves=[100])
    offered = await offer(api, device)
    assert offered.status_code == 200, offered.text
    terms = offered.json()
    downloaded = await api.http.get(terms["download_url"], headers=bearer(device["token"]))
    assert downloaded.status_code == 200, downloaded.text
    assert len(downloaded.content) == terms["size_bytes"]
    assert hashlib.sha256(downloaded.content).hexdigest() == terms["sha256"]
    stored = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == downloaded.content


async def test_a_refused_image_leaves_nothing_in_the_bucket(
    api: Api, alice_admin: str, vendor: Vendor, s3: S3Service, bucket: str
) -> None:
    terms = manifest("2.0.0")
    await announce(api, alice_admin, vendor, terms, signature(vendor.key, b"signed", terms))
    response = await upload(api, alice_admin, vendor, "2.0.0", b"tampered")
    assert response.status_code == 422
    assert s3.keys(bucket) == []
