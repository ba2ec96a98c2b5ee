"""The named cast for authorisation tests: two organisations, two wards, one of every role.

St Mary's (alice's organisation) has the Cardiology ward (carol the clinician, nina the nurse,
patient Peter and his pulse oximeter) and the Oncology ward (bob the clinician, patient Olive
and her monitor); tess is a technician and audrey an auditor. Mallory runs another organisation
entirely, with her own clinician, patient and device.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.devices import firmware as fw
from medcloud.identity.service import create_organisation
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.client import Api, bearer

PASSWORD = "a-long-enough-passphrase-42"


@dataclass
class Cast:
    """Tokens, by name, and the objects they care about."""

    tokens: dict[str, str]
    user_ids: dict[str, str]
    wards: dict[str, str]
    patients: dict[str, dict[str, Any]]
    devices: dict[str, dict[str, Any]]
    firmware: dict[str, Any] = field(default_factory=dict)
    """St Mary's PulseOx 2 model, a verified image in a campaign for Peter's oximeter, and an
    image announced but not uploaded (its bytes are FIRMWARE_PAYLOAD, as httpx sends JSON)."""
    ids: dict[str, str] = field(default_factory=dict)
    """Ids of further objects a test made for the cast (an alarm, a rule), by path parameter."""

    def auth(self, name: str) -> dict[str, str]:
        """The Authorization header of a cast member (a person or a device)."""
        if name in self.devices:
            return bearer(self.devices[name]["token"])
        return bearer(self.tokens[name])


async def invite(api: Api, admin: str, email: str, role: str, ward_ids: list[str]) -> str:
    """Invite a user, accept the invitation with PASSWORD, sign in; return (token)."""
    response = await api.http.post(
        "/api/v1/users",
        json={"email": email, "role": role, "ward_ids": ward_ids},
        headers=bearer(admin),
    )
    assert response.status_code == 201, response.text
    accepted = await api.http.post(
        "/api/v1/auth/invitations/accept",
        json={"token": response.json()["invitation_token"], "password": PASSWORD},
    )
    assert accepted.status_code == 204, accepted.text
    return await api.token(email, PASSWORD)


async def ward(api: Api, admin: str, name: str) -> str:
    response = await api.http.post("/api/v1/wards", json={"name": name}, headers=bearer(admin))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def patient(api: Api, token: str, value: str, ward_id: str | None) -> dict[str, Any]:
    response = await api.http.post(
        "/api/v1/patients",
        json={
            "identifier_system": "urn:oid:2.16.840.1.113883.2.1.4.1",
            "identifier_value": value,
            "family_name": f"Family-{value}",
            "given_name": f"Given-{value}",
            "birth_date": "1950-05-17",
            "ward_id": ward_id,
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def build_cast(api: Api) -> Cast:
    """Create the whole cast through the API (and the operator's organisation command)."""
    alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    cardiology = await ward(api, alice, "Cardiology")
    oncology = await ward(api, alice, "Oncology")
    tokens = {"alice_admin": alice}
    for name, role, wards in (
        ("carol_clinician", "clinician", [cardiology]),
        ("nina_nurse", "nurse", [cardiology]),
        ("bob_other_ward", "clinician", [oncology]),
        ("tess_technician", "technician", []),
        ("audrey_auditor", "auditor", []),
    ):
        tokens[name] = await invite(api, alice, f"{name}@stmary.example", role, wards)

    await create_organisation(
        uow_factory=api.app.state.runtime.uow,
        name="Mallory Health",
        admin_email="mallory.admin@mallory.example",
        admin_password=PASSWORD,
    )
    mallory = await api.token("mallory.admin@mallory.example", PASSWORD)
    tokens["mallory_other_org"] = mallory
    mallory_ward = await ward(api, mallory, "Cardiology")
    tokens["mallory_clinician"] = await invite(
        api, mallory, "clinician@mallory.example", "clinician", [mallory_ward]
    )

    patients = {
        "peter": await patient(api, alice, "P-1001", cardiology),
        "olive": await patient(api, alice, "P-2002", oncology),
        "mallorys_patient": await patient(api, mallory, "P-1001", mallory_ward),
    }
    devices = {
        "peters_oximeter": await api.register_device(alice, "PO-1", patients["peter"]["id"]),
        "olives_monitor": await api.register_device(alice, "BM-2", patients["olive"]["id"]),
        "mallorys_device": await api.register_device(
            mallory, "PO-1", patients["mallorys_patient"]["id"]
        ),
    }
    users = await api.http.get("/api/v1/users", headers=bearer(alice))
    user_ids = {u["email"].split("@")[0]: u["id"] for u in users.json()["items"]}
    return Cast(
        tokens=tokens,
        user_ids=user_ids,
        wards={"cardiology": cardiology, "oncology": oncology, "mallory": mallory_ward},
        patients=patients,
        devices=devices,
        firmware=await firmware(api, alice, devices["peters_oximeter"]),
    )


FIRMWARE_PAYLOAD = {"image": "PulseOx 2 firmware 9.9.9"}
FIRMWARE_EXPIRY = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


async def signed_image(
    api: Api, admin: str, model_id: str, key: Ed25519PrivateKey, version: str, content: bytes
) -> dict[str, Any]:
    """Announce an image of PulseOx 2 signed by `key` over `content`; return it (pending)."""
    manifest = fw.canonical_manifest(
        model="PulseOx 2", version=version, min_version=None, expires_at=FIRMWARE_EXPIRY
    )
    digest = hashlib.sha256(content).hexdigest()
    response = await api.http.post(
        f"/api/v1/device-models/{model_id}/firmware",
        json={
            "file_name": f"pulseox2-{version}.bin",
            "manifest": manifest,
            "signature": fw.sign(key, fw.signed_message(digest, manifest)),
        },
        headers=bearer(admin),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def firmware(api: Api, admin: str, oximeter: dict[str, Any]) -> dict[str, Any]:
    """A model, an image in a campaign to Peter's oximeter, and an image awaiting its bytes."""
    key = Ed25519PrivateKey.generate()
    model = await api.http.post(
        "/api/v1/device-models",
        json={
            "manufacturer": "Acme Medical",
            "model": "PulseOx 2",
            "measurement_types": ["spo2", "heart_rate"],
            "reporting_interval_seconds": 60,
            "signing_public_key": fw.public_pem(key),
        },
        headers=bearer(admin),
    )
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]
    beat = await api.http.post(
        f"/api/v1/devices/{oximeter['id']}/heartbeat",
        json={"firmware_version": "1.0.0", "battery_percent": 90},
        headers=bearer(oximeter["token"]),
    )
    assert beat.status_code == 200, beat.text
    content = b"PulseOx 2 firmware 1.1.0"
    image = await signed_image(api, admin, model_id, key, "1.1.0", content)
    uploaded = await api.http.put(
        f"/api/v1/device-models/{model_id}/firmware/1.1.0/content",
        content=content,
        headers=bearer(admin),
    )
    assert uploaded.status_code == 200, uploaded.text
    # What the access matrix uploads is the JSON encoding httpx gives FIRMWARE_PAYLOAD.
    payload = httpx.Request("PUT", "http://medcloud.test/", json=FIRMWARE_PAYLOAD).content
    await signed_image(api, admin, model_id, key, "9.9.9", payload)
    campaign = await api.http.post(
        f"/api/v1/device-models/{model_id}/campaigns",
        json={
            "name": "PulseOx 2 to 1.1.0",
            "image_id": image["id"],
            "waves": [100],
            "override_maintenance_window": True,
        },
        headers=bearer(admin),
    )
    assert campaign.status_code == 201, campaign.text
    return {
        "key": key,
        "public_key": fw.public_pem(key),
        "model_id": model_id,
        "image_id": image["id"],
        "pending_version": "9.9.9",
        "payload": FIRMWARE_PAYLOAD,
        "campaign_id": campaign.json()["id"],
    }
