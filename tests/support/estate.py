"""An organisation's estate: one object of every kind a route can name, made through the API.

The cast (tests/support/cast.py) gives each organisation people, a ward, a patient and a
device. Routes also name alarms, rules, shifts, policies, webhooks, inbox items, firmware and
FHIR resources; `furnish` makes one of each for a clinician's ward and patient, so that every
path parameter can be filled with a real object of a known organisation and ward.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import jwt

from medcloud.ingest import repository
from medcloud.ingest.models import Reading
from medcloud.interop.fhir_ids import device_metric_id, observation_id
from tests.support.cast import Cast, firmware
from tests.support.client import Api, eventually, now, reading

# Path parameters whose objects belong to one patient (or, for an inbox item, one person):
# what a colleague of another ward must not reach.
PATIENT_BOUND = frozenset(
    {"patient_id", "device_id", "alert_id", "observation_id", "metric_id", "item_id", "report_id"}
)
# Path parameters that are no object's id: they tell an organisation's objects from no other's.
NOT_IDS = frozenset({"version", "file_format"})
# Every kind of object an estate holds one of, by the path parameter that names it.
ID_KEYS = (
    "patient_id",
    "device_id",
    "ward_id",
    "user_id",
    "shift_id",
    "policy_id",
    "webhook_id",
    "alert_id",
    "rule_id",
    "item_id",
    "observation_id",
    "metric_id",
    "model_id",
    "image_id",
    "version",
    "campaign_id",
    "report_id",
    "file_format",
)


@dataclass
class Estate:
    """One organisation's objects as seen from one ward, by the path parameter naming them."""

    organisation_id: str
    admin: str
    """Cast name of the organisation's admin."""
    clinician: str
    """Cast name of a clinician of the ward (on call for it, and so with an inbox item)."""
    device: str
    """Cast name of the patient's device."""
    ids: dict[str, str]
    names: list[str] = field(default_factory=list)
    """Identifying text of the patient (names), which only their carers may see."""
    user_ids: dict[str, str] = field(default_factory=dict)
    """Every member of the organisation, by email."""

    def markers(self) -> set[str]:
        """Text that identifies this organisation's objects in any answer: their ids.

        The firmware version and a report's file format are left out ("9.9.9", "pdf" name
        nothing by themselves), and so are names, which two organisations' patients may share.
        """
        found = {value for key, value in self.ids.items() if key not in NOT_IDS}
        return found | set(self.user_ids.values()) | {self.organisation_id}

    def patient_markers(self) -> set[str]:
        """Text that identifies the patient and what is theirs (for another ward's staff)."""
        return {self.ids[key] for key in PATIENT_BOUND} | set(self.names)


def organisation_of(token: str) -> str:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return str(claims["org"])


async def furnish(
    api: Api,
    cast: Cast,
    *,
    admin: str,
    clinician: str,
    clinician_email: str,
    patient: str,
    device: str,
    ward: str,
    firmware_objects: dict[str, Any] | None = None,
) -> Estate:
    """Give the clinician's ward a shift, a policy, a webhook, a rule, history and an open alarm
    for the patient, an inbox item for the clinician and an observation; return the estate."""
    headers = cast.auth(admin)
    users = await api.http.get("/api/v1/users", headers=headers)
    assert users.status_code == 200, users.text
    user_ids = {u["email"]: u["id"] for u in users.json()["items"]}
    clinician_id = user_ids[clinician_email]
    patient_row = cast.patients[patient]
    ids = {
        "patient_id": patient_row["id"],
        "device_id": cast.devices[device]["id"],
        "ward_id": cast.wards[ward],
        "user_id": clinician_id,
    }
    ids |= await _notification_objects(api, headers, ids)
    ids |= await _alarm_and_rule(api, cast, headers, device, ids)
    ids |= await _inbox_item(api, cast.auth(clinician))
    ids |= await _observation(api, cast.devices[device])
    ids |= await patients_report(api, cast.auth(clinician), ids["patient_id"])
    made = firmware_objects or await firmware(api, cast.tokens[admin], cast.devices[device])
    ids |= {
        "model_id": made["model_id"],
        "image_id": made["image_id"],
        "version": made["pending_version"],
        "campaign_id": made["campaign_id"],
    }
    assert sorted(ids) == sorted(ID_KEYS)
    return Estate(
        organisation_id=organisation_of(cast.tokens[admin]),
        admin=admin,
        clinician=clinician,
        device=device,
        ids=ids,
        names=[patient_row["family_name"], patient_row["given_name"]],
        user_ids=user_ids,
    )


def shift(user_id: str, ward_id: str, duty: str) -> dict[str, Any]:
    """`user_id` on call in the ward for the next hour."""
    start = now() - dt.timedelta(minutes=5)
    return {
        "user_id": user_id,
        "ward_id": ward_id,
        "duty": duty,
        "starts_at": start.isoformat(),
        "ends_at": (start + dt.timedelta(hours=1)).isoformat(),
    }


def patient_rule(patient_id: str) -> dict[str, Any]:
    """A heart-rate rule for one patient alone."""
    return {
        "key": "estate_rule",
        "kind": "threshold",
        "scope": "patient",
        "scope_id": patient_id,
        "measurement": "heart_rate",
        "priority": "high",
        "high": 150,
    }


async def _notification_objects(
    api: Api, headers: dict[str, str], ids: dict[str, str]
) -> dict[str, str]:
    # On call first, so that the alarm made next lands in the clinician's inbox.
    made = await api.http.post(
        "/api/v1/on-call", json=shift(ids["user_id"], ids["ward_id"], "primary"), headers=headers
    )
    policy = await api.http.put(
        "/api/v1/escalation-policies",
        json={
            "ward_id": ids["ward_id"],
            "priority": "low",
            "steps": [{"after_seconds": 0, "notify": "primary"}],
        },
        headers=headers,
    )
    hook = await api.http.post(
        "/api/v1/webhooks", json={"url": "https://hooks.ehr.example/medcloud"}, headers=headers
    )
    for response in (made, policy, hook):
        assert response.status_code in (200, 201), response.text
    return {
        "shift_id": made.json()["id"],
        "policy_id": policy.json()["id"],
        "webhook_id": hook.json()["id"],
    }


async def _alarm_and_rule(
    api: Api, cast: Cast, headers: dict[str, str], device: str, ids: dict[str, str]
) -> dict[str, str]:
    rule = await api.http.post(
        "/api/v1/alarm-rules", json=patient_rule(ids["patient_id"]), headers=headers
    )
    assert rule.status_code == 201, rule.text
    # Forty minutes of history, enough for a forecast, written to the store directly: no
    # device of the cast measured the patient then.
    runtime = api.app.state.runtime
    organisation_id = (await runtime.patients.get(ids["patient_id"])).organisation_id
    start = now() - dt.timedelta(minutes=40)
    series = (ids["device_id"], "heart_rate", ids["patient_id"], organisation_id)
    async with runtime.write_sessions() as session, session.begin():
        [series_id] = (await repository.make_series(session, [series])).values()
        session.add_all(
            Reading(
                series_id=series_id, value=70 + i % 5, timestamp=start + dt.timedelta(minutes=i)
            )
            for i in range(40)
        )
    sent = await api.send(cast.devices[device], reading(heart_rate=160))
    assert sent.status_code == 201, sent.text

    async def alarms() -> list[dict[str, Any]]:
        response = await api.http.get(
            "/api/v1/alerts", params={"patient_id": ids["patient_id"]}, headers=headers
        )
        found: list[dict[str, Any]] = response.json()["items"]
        return found

    # Alarms and inbox items arrive through the outbox, behind whatever else was published.
    found = await eventually(alarms, timeout=60)
    assert found, "the patient's alarm was not raised"
    return {"alert_id": found[0]["id"], "rule_id": rule.json()["id"]}


async def _inbox_item(api: Api, headers: dict[str, str]) -> dict[str, str]:
    async def items() -> list[dict[str, Any]]:
        response = await api.http.get("/api/v1/notifications/inbox", headers=headers)
        found: list[dict[str, Any]] = response.json()["items"]
        return found

    found = await eventually(items, timeout=60)
    assert found, "the alarm did not reach the clinician's inbox"
    return {"item_id": found[0]["id"]}


async def _observation(api: Api, device: dict[str, Any]) -> dict[str, str]:
    # A whole second ahead: surely after the device's assignment, so the patient's.
    at = now().replace(microsecond=0) + dt.timedelta(seconds=1)
    sent = await api.send(device, reading(at, spo2=97))
    assert sent.status_code == 201, sent.text
    return {
        "observation_id": observation_id(device_id=device["id"], type="spo2", at=at),
        "metric_id": device_metric_id(device_id=device["id"], type_code="spo2"),
    }


async def patients_report(api: Api, headers: dict[str, str], patient_id: str) -> dict[str, str]:
    """Today's report of the patient, made by the clinician who cares for them."""
    made = await api.http.post(
        "/api/v1/reports",
        json={"scope": "patient", "patient_id": patient_id, "day": now().date().isoformat()},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    return {"report_id": made.json()["id"], "file_format": "pdf"}
