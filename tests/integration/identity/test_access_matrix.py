"""The access matrix, generated from the app's own route table.

Every route the app exposes is either public, a device route, or declares exactly one policy
action; a new route with none fails here. Each protected route is then called by an anonymous
caller, a device, every role that lacks the action, another organisation and another ward, and
finally by someone allowed (so a refusal is never an accident of a bad request).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from medcloud.ingest import repository
from medcloud.ingest.models import Reading
from medcloud.interop.fhir_ids import device_metric_id, observation_id
from medcloud.platform.policy import ROLE_PERMISSIONS, Action
from medcloud.platform.security import Role
from tests.security.routes import DEVICE_ROUTES, PUBLIC, STREAMS, actions_of, walk
from tests.support.cast import Cast
from tests.support.client import HEALTHY_NEWS2, Api, bearer, eventually, now, reading
from tests.support.estate import patients_report

# Routes whose sample body names an object of St Mary's (a user to put on call).
NAMES_OURS = {
    ("POST", "/api/v1/on-call"),
    ("POST", "/api/v1/alarm-rules"),
    ("POST", "/api/v1/reports"),
}
# Searches that need a parameter naming their object, filled like a path's.
QUERIES = {
    ("GET", "/fhir/r4/Observation"): "?patient=Patient/{patient_id}",
    ("GET", "/fhir/r4/Observation/$lastn"): "?patient={patient_id}",
    ("GET", "/fhir/r4/DeviceMetric"): "?source=Device/{device_id}",
}

# Who in St Mary's holds each role; the Cardiology ones care for Peter.
MEMBERS = {
    Role.ADMIN: "alice_admin",
    Role.CLINICIAN: "carol_clinician",
    Role.NURSE: "nina_nurse",
    Role.TECHNICIAN: "tess_technician",
    Role.AUDITOR: "audrey_auditor",
}
# Actions on patient data, where another ward's clinician must get 404.
CLINICAL = {
    Action.READINGS_READ,
    Action.ALERTS_READ,
    Action.PATIENT_READ,
    Action.PATIENT_WRITE,
    Action.DEVICE_READ,
}

BODIES: dict[tuple[str, str], Callable[[Cast], Any]] = {
    ("POST", "/api/v1/users"): lambda _c: {"email": f"{unique()}@stmary.example", "role": "nurse"},
    ("PATCH", "/api/v1/users/{user_id}"): lambda _c: {"role": "clinician"},
    ("POST", "/api/v1/users/{user_id}/unlock"): lambda _c: None,
    ("POST", "/api/v1/wards"): lambda _c: {"name": f"Ward {unique()}"},
    ("POST", "/api/v1/patients"): lambda _c: {
        "identifier_system": "urn:test",
        "identifier_value": unique(),
        "family_name": "Matrix",
        "given_name": "Test",
        "birth_date": "1990-01-01",
    },
    ("PATCH", "/api/v1/patients/{patient_id}"): lambda c: {"ward_id": c.wards["cardiology"]},
    ("POST", "/api/v1/reports"): lambda c: {
        "scope": "ward",
        "ward_id": c.wards["cardiology"],
        "patient_id": None,
        "day": dt.datetime.now(dt.UTC).date().isoformat(),
    },
    ("POST", "/api/v1/patients/{patient_id}/break-glass"): lambda _c: {
        "reason": "covering an emergency on this ward"
    },
    ("POST", "/api/v1/devices"): lambda _c: {
        "serial_number": unique(),
        "model": "m",
        "manufacturer": "x",
    },
    ("POST", "/api/v1/devices/{device_id}/credentials/rotate"): lambda _c: {"grace_seconds": 60},
    ("POST", "/api/v1/devices/{device_id}/credentials/revoke"): lambda _c: {},
    # Abnormal, so Peter's alarm stays active for the routes that act on it.
    ("POST", "/api/v1/devices/{device_id}/data"): lambda _c: reading(heart_rate=160),
    ("PATCH", "/api/v1/devices/{device_id}"): lambda _c: {"location": "Cardiology bay 4"},
    ("PUT", "/api/v1/devices/{device_id}/assignment"): lambda c: {
        "patient_id": c.patients["peter"]["id"]
    },
    ("POST", "/api/v1/devices/{device_id}/heartbeat"): lambda _c: {
        "battery_percent": 80,
        "signal_strength_dbm": -60,
        "firmware_version": "1.0.0",
        "uptime_seconds": 3600,
    },
    ("POST", "/api/v1/devices/{device_id}/firmware/progress"): lambda _c: {"status": "downloading"},
    ("POST", "/api/v1/device-models"): lambda c: {
        "manufacturer": "Matrix Medical",
        "model": unique(),
        "signing_public_key": c.firmware["public_key"],
    },
    ("POST", "/api/v1/device-models/{model_id}/firmware"): lambda _c: {
        "file_name": "pulseox2.bin",
        "manifest": {
            "model": "PulseOx 2",
            "version": f"5.{uuid.uuid4().int % 100000}",
            "expires_at": "2099-01-01T00:00:00Z",
        },
        "signature": "A" * 86 + "==",
    },
    ("PUT", "/api/v1/device-models/{model_id}/firmware/{version}/content"): lambda c: c.firmware[
        "payload"
    ],
    ("POST", "/api/v1/device-models/{model_id}/campaigns"): lambda c: {
        "name": f"Campaign {unique()}",
        "image_id": c.firmware["image_id"],
    },
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): lambda _c: None,
    ("POST", "/api/v1/alerts/{alert_id}/silence"): lambda _c: {"seconds": 60},
    # For a patient of the caller's ward: organisation-wide rules are the admins' alone.
    ("POST", "/api/v1/alarm-rules"): lambda c: {
        "key": f"m{unique()}",
        "scope": "patient",
        "scope_id": c.patients["peter"]["id"],
        "kind": "threshold",
        "measurement": "spo2",
        "priority": "medium",
        "low": 88,
    },
    ("PUT", "/api/v1/alarm-rules/{rule_id}"): lambda c: matrix_rule(c) | {"high": 140},
    ("POST", "/api/v1/analytics/news2"): lambda _c: HEALTHY_NEWS2,
    ("PUT", "/api/v1/patients/{patient_id}/news2-scale"): lambda _c: {"spo2_scale": 2},
    ("PUT", "/api/v1/notifications/recipients/{user_id}"): lambda _c: {
        "email": "pager@stmary.example",
        "channels": {"high": ["email"]},
    },
    ("POST", "/api/v1/on-call"): lambda c: on_call(c, "charge"),
    ("PUT", "/api/v1/escalation-policies"): lambda _c: {
        "priority": "medium",
        "steps": [{"after_seconds": 0, "notify": "primary"}],
    },
    ("PUT", "/api/v1/notifications/settings"): lambda _c: {
        "fallback_email": "switchboard@stmary.example"
    },
    ("POST", "/api/v1/webhooks"): lambda _c: {"url": "https://ehr.stmary.example/medcloud"},
    ("POST", "/api/v1/hl7/interfaces"): lambda _c: {
        "name": f"Gateway {unique()}",
        "sending_application": "MATRIXGW",
        "identifier_system": "urn:oid:1.2.3.4",
    },
    ("POST", "/api/v1/notifications/inbox/{item_id}/read"): lambda _c: None,
    ("POST", "/api/v1/campaigns/{campaign_id}/pause"): lambda _c: None,
    ("POST", "/api/v1/campaigns/{campaign_id}/resume"): lambda _c: None,
    ("POST", "/api/v1/campaigns/{campaign_id}/cancel"): lambda _c: None,
}


def unique() -> str:
    return uuid.uuid4().hex[:12]


def matrix_rule(cast: Cast) -> dict[str, Any]:
    """A rule for Peter alone, which the matrix reads, changes and deletes."""
    return {
        "key": "matrix_rule",
        "kind": "threshold",
        "scope": "patient",
        "scope_id": cast.patients["peter"]["id"],
        "measurement": "heart_rate",
        "priority": "high",
        "high": 150,
    }


def on_call(cast: Cast, duty: str) -> dict[str, Any]:
    """Carol on call in Cardiology for the next hour."""
    start = now() - dt.timedelta(minutes=5)
    return {
        "user_id": cast.user_ids["carol_clinician"],
        "ward_id": cast.wards["cardiology"],
        "duty": duty,
        "starts_at": start.isoformat(),
        "ends_at": (start + dt.timedelta(hours=1)).isoformat(),
    }


async def notification_objects(api: Api, cast: Cast) -> dict[str, str]:
    """Put carol on call (so Peter's alarm lands in her inbox), and give St Mary's an
    escalation policy and a webhook; return their ids."""
    alice = cast.auth("alice_admin")
    shift = await api.http.post("/api/v1/on-call", json=on_call(cast, "primary"), headers=alice)
    policy = await api.http.put(
        "/api/v1/escalation-policies",
        json={"priority": "low", "steps": [{"after_seconds": 0, "notify": "primary"}]},
        headers=alice,
    )
    hook = await api.http.post(
        "/api/v1/webhooks", json={"url": "https://ehr.stmary.example/hook"}, headers=alice
    )
    for response in (shift, policy, hook):
        assert response.status_code in (200, 201), response.text
    return {
        "shift_id": shift.json()["id"],
        "policy_id": policy.json()["id"],
        "webhook_id": hook.json()["id"],
    }


async def carols_inbox_item(api: Api, cast: Cast) -> dict[str, str]:
    async def items() -> list[dict[str, Any]]:
        response = await api.http.get(
            "/api/v1/notifications/inbox", headers=cast.auth("carol_clinician")
        )
        found: list[dict[str, Any]] = response.json()["items"]
        return found

    found = await eventually(items)
    assert found, "Peter's alarm did not reach carol's inbox"
    return {"item_id": found[0]["id"]}


async def peters_alarm_and_rule(api: Api, cast: Cast) -> dict[str, str]:
    """Give Peter half an hour of history, an open alarm and a rule of his own; return ids."""
    alice = cast.auth("alice_admin")
    rule = await api.http.post("/api/v1/alarm-rules", json=matrix_rule(cast), headers=alice)
    assert rule.status_code == 201, rule.text
    # History from before the oximeter was assigned to him (a monitor he had on the ward
    # earlier): written to the store directly, as no device of the cast measured him then.
    oximeter = cast.devices["peters_oximeter"]
    start = now() - dt.timedelta(minutes=40)
    runtime = api.app.state.runtime
    organisation_id = (await runtime.patients.get(cast.patients["peter"]["id"])).organisation_id
    series = (oximeter["id"], "heart_rate", cast.patients["peter"]["id"], organisation_id)
    async with runtime.write_sessions() as session, session.begin():
        [series_id] = (await repository.make_series(session, [series])).values()
        session.add_all(
            Reading(
                series_id=series_id,
                value=70 + i % 5,
                timestamp=start + dt.timedelta(minutes=i),
            )
            for i in range(40)
        )
    assert (await api.send(oximeter, reading(heart_rate=160))).status_code == 201

    async def alarm() -> list[dict[str, Any]]:
        return await api.alerts(cast.tokens["alice_admin"], patient_id=cast.patients["peter"]["id"])

    alarms = await eventually(alarm)
    assert alarms, "Peter's alarm was not raised"
    return {"alert_id": alarms[0]["id"], "rule_id": rule.json()["id"]}


async def peters_observation(api: Api, cast: Cast) -> dict[str, str]:
    """An SpO2 of Peter's; return the FHIR ids of its Observation and of its DeviceMetric."""
    oximeter = cast.devices["peters_oximeter"]
    # A whole second ahead: surely after the oximeter's assignment to Peter, so his.
    at = now().replace(microsecond=0) + dt.timedelta(seconds=1)
    assert (await api.send(oximeter, reading(at, spo2=97))).status_code == 201
    return {
        "observation_id": observation_id(device_id=oximeter["id"], type="spo2", at=at),
        "metric_id": device_metric_id(device_id=oximeter["id"], type_code="spo2"),
    }


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    action: Action | None

    def url(self, cast: Cast, *, org: str = "st_marys") -> str:
        ids = {
            "st_marys": {
                "device_id": cast.devices["peters_oximeter"]["id"],
                "patient_id": cast.patients["peter"]["id"],
                "user_id": cast.user_ids["carol_clinician"],
                "model_id": cast.firmware["model_id"],
                "image_id": cast.firmware["image_id"],
                "version": cast.firmware["pending_version"],
                "campaign_id": cast.firmware["campaign_id"],
                "ward_id": cast.wards["cardiology"],
                **cast.ids,
            },
        }[org]
        return (self.path + QUERIES.get((self.method, self.path), "")).format(**ids)

    @property
    def has_object(self) -> bool:
        return "{" in self.path + QUERIES.get((self.method, self.path), "")


def endpoints(app: FastAPI) -> list[Endpoint]:
    found = []
    for route in walk(app):
        if not route.include_in_schema:
            continue  # the document and its pages (operators only in production: test_edge)
        actions = set(actions_of(route.dependant))
        for method in route.methods or ():
            if method == "HEAD":
                continue
            key = (method, route.path)
            if key in PUBLIC or key in DEVICE_ROUTES:
                assert not actions, f"{key} is listed as public or device-only but has a policy"
                found.append(Endpoint(method, route.path, None))
                continue
            assert len(actions) == 1, f"{method} {route.path} declares no single policy action"
            found.append(Endpoint(method, route.path, actions.pop()))
    return found


async def call(api: Api, cast: Cast, endpoint: Endpoint, who: str | None) -> httpx.Response:
    headers = cast.auth(who) if who else {}
    body = BODIES.get((endpoint.method, endpoint.path))
    return await api.http.request(
        endpoint.method,
        endpoint.url(cast),
        json=body(cast) if body else None,
        headers=headers,
    )


def st_marys_ids(cast: Cast) -> list[str]:
    return [
        cast.devices["peters_oximeter"]["id"],
        cast.devices["olives_monitor"]["id"],
        cast.patients["peter"]["id"],
        cast.patients["olive"]["id"],
        cast.user_ids["carol_clinician"],
    ]


async def test_every_route_is_covered_by_the_access_matrix(api: Api, cast: Cast) -> None:
    cast.ids |= await notification_objects(api, cast)
    cast.ids |= await peters_alarm_and_rule(api, cast)
    cast.ids |= await carols_inbox_item(api, cast)
    cast.ids |= await peters_observation(api, cast)
    cast.ids |= await patients_report(
        api, bearer(cast.tokens["carol_clinician"]), cast.patients["peter"]["id"]
    )
    table = endpoints(api.app)
    documented = {
        (method.upper(), path)
        for path, operations in api.app.openapi()["paths"].items()
        for method in operations
    }
    assert {(e.method, e.path) for e in table} == documented
    missing_bodies = [
        (e.method, e.path)
        for e in table
        if e.method in ("POST", "PATCH", "PUT")
        and (e.method, e.path) not in BODIES
        and (e.method, e.path) not in PUBLIC
    ]
    assert missing_bodies == [], "add a sample body for each new route"

    failures: list[str] = []

    def expect(endpoint: Endpoint, who: str, response: httpx.Response, *statuses: int) -> None:
        if response.status_code not in statuses:
            failures.append(
                f"{endpoint.method} {endpoint.path} as {who}: {response.status_code}, "
                f"wanted {statuses}: {response.text[:200]}"
            )
        elif response.status_code >= 400:
            # FHIR paths answer errors as OperationOutcomes, the rest as problem details.
            media_type = (
                "application/fhir+json"
                if endpoint.path.startswith("/fhir/")
                else "application/problem+json"
            )
            assert response.headers["content-type"].startswith(media_type), response.text

    protected = [e for e in table if (e.method, e.path) not in PUBLIC]
    for endpoint in protected:
        expect(endpoint, "anonymous", await call(api, cast, endpoint, None), 401)
        if endpoint.action is None:  # a device route: people and other devices are refused
            for who in ("alice_admin", "carol_clinician", "olives_monitor", "mallorys_device"):
                expect(endpoint, who, await call(api, cast, endpoint, who), 403)
            continue
        expect(endpoint, "a device", await call(api, cast, endpoint, "olives_monitor"), 403)
        for role, member in MEMBERS.items():
            if endpoint.action not in ROLE_PERMISSIONS[role]:
                expect(endpoint, member, await call(api, cast, endpoint, member), 403)
        if (endpoint.method, endpoint.path) in STREAMS:
            continue
        outsider = (
            "mallory_other_org"
            if endpoint.action in ROLE_PERMISSIONS[Role.ADMIN]
            else "mallory_clinician"
        )
        response = await call(api, cast, endpoint, outsider)
        if (endpoint.method, endpoint.path) in NAMES_OURS:
            # The sample body names St Mary's objects: another organisation is told the field
            # is wrong, exactly as for an id that does not exist.
            expect(endpoint, outsider, response, 422)
        elif endpoint.has_object:
            expect(endpoint, outsider, response, 404)
        else:
            expect(endpoint, outsider, response, 200, 201)
            if endpoint.path == "/api/v1/audit":
                # The outsider's own log names the ids they probed; it must hold only entries
                # of their own organisation.
                own = jwt.decode(cast.tokens[outsider], options={"verify_signature": False})
                items = response.json()["items"]
                leaked = [e["position"] for e in items if e["organisation_id"] != own["org"]]
            else:
                leaked = [i for i in st_marys_ids(cast) if i in response.text]
            if leaked:
                failures.append(f"{endpoint.method} {endpoint.path} shows {outsider} {leaked}")
        if endpoint.action in CLINICAL:
            response = await call(api, cast, endpoint, "bob_other_ward")
            if endpoint.has_object:
                expect(endpoint, "bob_other_ward", response, 404)
            elif endpoint.method == "GET":
                peters = [cast.patients["peter"]["id"], cast.devices["peters_oximeter"]["id"]]
                if any(i in response.text for i in peters):
                    failures.append(f"GET {endpoint.path} shows bob Peter's data")

    # Finally, those who may: every refusal above was a refusal, not a broken request.
    # (Revoking the device's credentials goes last: the device route needs them.)
    for endpoint in sorted(protected, key=lambda e: e.path.endswith("/revoke")):
        if (endpoint.method, endpoint.path) in STREAMS:
            continue
        if endpoint.action is None:
            who = "peters_oximeter"
        else:
            holders = [m for r, m in MEMBERS.items() if endpoint.action in ROLE_PERMISSIONS[r]]
            who = "carol_clinician" if "carol_clinician" in holders else holders[0]
        expect(endpoint, who, await call(api, cast, endpoint, who), 200, 201, 204)
    assert failures == [], "\n".join(failures)
