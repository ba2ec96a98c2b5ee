"""Helpers the device-management tests share: a model with its signing key, signed images."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.devices import firmware as fw
from tests.support.client import Api, bearer

MODEL = "PulseOx 3"
MANUFACTURER = "Acme Medical"


@dataclass
class Vendor:
    """A manufacturer's model as registered, and the key that signs its firmware."""

    model_id: str
    key: Ed25519PrivateKey


async def register_model(
    api: Api, token: str, *, interval: float = 60.0, model: str = MODEL
) -> Vendor:
    key = Ed25519PrivateKey.generate()
    response = await api.http.post(
        "/api/v1/device-models",
        json={
            "manufacturer": MANUFACTURER,
            "model": model,
            "measurement_types": ["spo2", "heart_rate"],
            "reporting_interval_seconds": interval,
            "signing_public_key": fw.public_pem(key),
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    return Vendor(response.json()["id"], key)


def manifest(
    version: str,
    *,
    model: str = MODEL,
    expires_at: dt.datetime | None = None,
    min_version: str | None = None,
) -> dict[str, str | None]:
    expiry = expires_at or dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    return fw.canonical_manifest(
        model=model, version=version, min_version=min_version, expires_at=expiry
    )


def signature(key: Ed25519PrivateKey, content: bytes, terms: dict[str, str | None]) -> str:
    return fw.sign(key, fw.signed_message(hashlib.sha256(content).hexdigest(), terms))


async def announce(
    api: Api,
    token: str,
    vendor: Vendor,
    terms: dict[str, str | None],
    sig: str | None,
    *,
    file_name: str = "image.bin",
) -> httpx.Response:
    body: dict[str, Any] = {"file_name": file_name, "manifest": terms}
    if sig is not None:
        body["signature"] = sig
    return await api.http.post(
        f"/api/v1/device-models/{vendor.model_id}/firmware", json=body, headers=bearer(token)
    )


async def upload(
    api: Api, token: str, vendor: Vendor, version: str, content: bytes
) -> httpx.Response:
    return await api.http.put(
        f"/api/v1/device-models/{vendor.model_id}/firmware/{version}/content",
        content=content,
        headers=bearer(token),
    )


async def release(api: Api, token: str, vendor: Vendor, version: str, **terms: Any) -> str:
    """Announce and upload a correctly signed image; return its id."""
    content = f"{MODEL} firmware {version}".encode() * 100
    signed = manifest(version, **terms)
    announced = await announce(api, token, vendor, signed, signature(vendor.key, content, signed))
    assert announced.status_code == 201, announced.text
    uploaded = await upload(api, token, vendor, version, content)
    assert uploaded.status_code == 200, uploaded.text
    image_id: str = uploaded.json()["id"]
    return image_id


async def start_campaign(
    api: Api, token: str, vendor: Vendor, image_id: str, **options: Any
) -> dict[str, Any]:
    response = await api.http.post(
        f"/api/v1/device-models/{vendor.model_id}/campaigns",
        json={"name": "rollout", "image_id": image_id, **options},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def campaign(api: Api, token: str, campaign_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/api/v1/campaigns/{campaign_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
