"""The named cast for authorisation tests: two organisations, two wards, one of every role.

St Mary's (alice's organisation) has the Cardiology ward (carol the clinician, nina the nurse,
patient Peter and his pulse oximeter) and the Oncology ward (bob the clinician, patient Olive
and her monitor); tess is a technician and audrey an auditor. Mallory runs another organisation
entirely, with her own clinician, patient and device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    )
