"""The app's route table, the allow-lists the security suite holds it to, and the requests it
sends: one well-formed request per route, filled with the ids of one organisation's estate."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.routing import APIRoute

from medcloud.app import create_app
from medcloud.config import Settings
from medcloud.devices import firmware as fw
from medcloud.platform.policy import ROLE_PERMISSIONS, Action
from medcloud.platform.security import Role
from tests.support.cast import FIRMWARE_PAYLOAD
from tests.support.client import HEALTHY_NEWS2, reading
from tests.support.estate import ID_KEYS, NOT_IDS, Estate, patient_rule, shift

# Routes anyone may call without a token. Each is here for a reason; nothing else is.
PUBLIC = {
    # Liveness, readiness and metrics for the platform's probes and Prometheus.
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    # The verification keys are public by definition.
    ("GET", "/.well-known/jwks.json"),
    # Signing in and what comes before having a token.
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/mfa/enrol"),
    ("POST", "/api/v1/auth/invitations/accept"),
    # Authenticated by what they carry: an acknowledge link's signed token, the SMS provider's
    # signature.
    ("GET", "/api/v1/notifications/acknowledge"),
    ("POST", "/api/v1/notifications/acknowledge"),
    ("POST", "/api/v1/notifications/sms/status"),
    # A report's file, for whoever holds the expiring link signed for it (mailed, or handed out
    # with the report to a user who may read it).
    ("GET", "/api/v1/reports/{report_id}/files/{file_format}"),
    # FHIR servers describe themselves to anyone (R4 http.html#capabilities).
    ("GET", "/fhir/r4/metadata"),
    # The API's own documentation (operators only in the production profile).
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
}
# Routes only a device may call, each about the device named in its path.
DEVICE_ROUTES = {
    ("POST", "/api/v1/devices/{device_id}/data"),
    ("POST", "/api/v1/devices/{device_id}/heartbeat"),
    ("GET", "/api/v1/devices/{device_id}/firmware/update"),
    ("GET", "/api/v1/devices/{device_id}/firmware/images/{image_id}"),
    ("POST", "/api/v1/devices/{device_id}/firmware/progress"),
}
# Streams never end by themselves: only their refusals are checked here (what a stream shows
# whom is tested in tests/integration/notifications/test_stream.py and
# tests/integration/ingest/test_live_readings.py).
STREAMS = {
    ("GET", "/api/v1/alerts/stream"),
    ("GET", "/api/v1/readings/latest/{patient_id}/stream"),
}
# Opening another ward's patient for a while is what breaking the glass is for.
WARD_EXEMPT = {("POST", "/api/v1/patients/{patient_id}/break-glass")}

# Who in St Mary's holds each role; the Cardiology ones care for Peter.
MEMBERS = {
    Role.ADMIN: "alice_admin",
    Role.CLINICIAN: "carol_clinician",
    Role.NURSE: "nina_nurse",
    Role.TECHNICIAN: "tess_technician",
    Role.AUDITOR: "audrey_auditor",
}
# Members of Mallory Health, the other organisation, by role.
OUTSIDERS = {Role.ADMIN: "mallory_other_org", Role.CLINICIAN: "mallory_clinician"}
# Bob is a clinician of Oncology: Peter, of Cardiology, is not his patient.
OTHER_WARD = "bob_other_ward"

# Query parameters that name an object (filled with the id of the path parameter so named).
OBJECT_FILTERS = {"patient_id", "device_id", "ward_id", "model_id"}
# Searches whose parameters the route parses itself, so they are not in its signature; those
# marked required answer 400 without them.
SEARCHES: dict[tuple[str, str], tuple[str, bool]] = {
    ("GET", "/fhir/r4/Observation"): ("patient=Patient/{patient_id}", True),
    ("GET", "/fhir/r4/Observation/$lastn"): ("patient={patient_id}", True),
    ("GET", "/fhir/r4/DeviceMetric"): ("source=Device/{device_id}", True),
    ("GET", "/api/v1/audit"): ("patient_id={patient_id}", False),
}


def unique() -> str:
    return uuid.uuid4().hex[:12]


def _signing_key() -> str:
    return fw.public_pem(Ed25519PrivateKey.generate())


# A well-formed body for every route that takes one, naming the estate's objects where the
# route's use names any: the request its owner would send.
BODIES: dict[tuple[str, str], Callable[[Estate], Any]] = {
    ("POST", "/api/v1/users"): lambda e: {
        "email": f"{unique()}@ward.example",
        "role": "nurse",
        "ward_ids": [e.ids["ward_id"]],
    },
    ("PATCH", "/api/v1/users/{user_id}"): lambda e: {
        "role": "clinician",
        "ward_ids": [e.ids["ward_id"]],
    },
    ("POST", "/api/v1/wards"): lambda _e: {"name": f"Ward {unique()}"},
    ("POST", "/api/v1/patients"): lambda e: {
        "identifier_system": "urn:oid:2.16.840.1.113883.2.1.4.1",
        "identifier_value": unique(),
        "family_name": "Probe",
        "given_name": "Security",
        "birth_date": "1990-01-01",
        "ward_id": e.ids["ward_id"],
    },
    ("PATCH", "/api/v1/patients/{patient_id}"): lambda e: {"ward_id": e.ids["ward_id"]},
    ("POST", "/api/v1/patients/{patient_id}/break-glass"): lambda _e: {
        "reason": "rapid response call, covering this ward tonight"
    },
    ("POST", "/api/v1/devices"): lambda e: {
        "serial_number": unique(),
        "model": "PulseOx 2",
        "manufacturer": "Acme Medical",
        "patient_id": e.ids["patient_id"],
    },
    ("PATCH", "/api/v1/devices/{device_id}"): lambda _e: {"location": "Bay 4"},
    ("PUT", "/api/v1/devices/{device_id}/assignment"): lambda e: {
        "patient_id": e.ids["patient_id"]
    },
    # The longest grace: the device keeps its token for the rest of the run.
    ("POST", "/api/v1/devices/{device_id}/credentials/rotate"): lambda _e: {
        "grace_seconds": 7 * 24 * 3600
    },
    ("POST", "/api/v1/devices/{device_id}/credentials/revoke"): lambda _e: {},
    # Abnormal, so the patient's alarm stays open for the routes that act on it.
    ("POST", "/api/v1/devices/{device_id}/data"): lambda _e: reading(heart_rate=160),
    ("POST", "/api/v1/devices/{device_id}/heartbeat"): lambda _e: {
        "battery_percent": 80,
        "signal_strength_dbm": -60,
        "firmware_version": "1.0.0",
        "uptime_seconds": 3600,
    },
    ("POST", "/api/v1/devices/{device_id}/firmware/progress"): lambda _e: {"status": "downloading"},
    ("POST", "/api/v1/device-models"): lambda _e: {
        "manufacturer": "Probe Medical",
        "model": unique(),
        "signing_public_key": _signing_key(),
    },
    ("POST", "/api/v1/device-models/{model_id}/firmware"): lambda _e: {
        "file_name": "pulseox2.bin",
        "manifest": {
            "model": "PulseOx 2",
            "version": f"5.{uuid.uuid4().int % 100000}",
            "expires_at": "2099-01-01T00:00:00Z",
        },
        "signature": "A" * 86 + "==",
    },
    ("PUT", "/api/v1/device-models/{model_id}/firmware/{version}/content"): lambda _e: (
        FIRMWARE_PAYLOAD
    ),
    ("POST", "/api/v1/device-models/{model_id}/campaigns"): lambda e: {
        "name": f"Campaign {unique()}",
        "image_id": e.ids["image_id"],
    },
    ("POST", "/api/v1/alerts/{alert_id}/silence"): lambda _e: {"seconds": 60},
    ("POST", "/api/v1/alarm-rules"): lambda e: (
        patient_rule(e.ids["patient_id"]) | {"key": f"probe_{unique()}"}
    ),
    ("PUT", "/api/v1/alarm-rules/{rule_id}"): lambda e: (
        patient_rule(e.ids["patient_id"]) | {"high": 140}
    ),
    ("POST", "/api/v1/analytics/news2"): lambda _e: HEALTHY_NEWS2,
    ("PUT", "/api/v1/patients/{patient_id}/news2-scale"): lambda _e: {"spo2_scale": 2},
    ("PUT", "/api/v1/notifications/recipients/{user_id}"): lambda _e: {
        "email": "pager@ward.example",
        "channels": {"high": ["email"]},
    },
    ("POST", "/api/v1/on-call"): lambda e: shift(e.ids["user_id"], e.ids["ward_id"], "charge"),
    ("PUT", "/api/v1/escalation-policies"): lambda e: {
        "ward_id": e.ids["ward_id"],
        "priority": "low",
        "steps": [{"after_seconds": 0, "notify": "primary"}],
    },
    ("PUT", "/api/v1/notifications/settings"): lambda _e: {
        "fallback_email": "switchboard@ward.example"
    },
    ("POST", "/api/v1/webhooks"): lambda _e: {"url": "https://hooks.ehr.example/probe"},
    ("POST", "/api/v1/reports"): lambda e: {
        "scope": "patient",
        "patient_id": e.ids["patient_id"],
        "day": dt.datetime.now(dt.UTC).date().isoformat(),
    },
    ("POST", "/api/v1/hl7/interfaces"): lambda _e: {
        "name": f"Gateway {unique()}",
        "sending_application": "PROBEGW",
        "identifier_system": "urn:oid:1.2.3.4",
    },
}


# Routes that read their body themselves rather than through a declared model.
READS_ITS_OWN_BODY = {
    ("POST", "/api/v1/devices/{device_id}/data"),
    ("PUT", "/api/v1/device-models/{model_id}/firmware/{version}/content"),
    ("POST", "/api/v1/notifications/sms/status"),
}
# Routes whose body is a form, as OAuth 2 password sign-in and the SMS provider send it.
FORMS = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/mfa/enrol"),
    ("POST", "/api/v1/notifications/sms/status"),
}


@dataclass(frozen=True)
class Endpoint:
    """One method of one route, and what the route declares about who may call it."""

    method: str
    path: str
    actions: frozenset[Action]
    documented: bool
    query_params: tuple[str, ...] = ()
    authenticated_by: str = ""
    """The dependency that reads the token, or "" where the handler reads it itself."""
    declares_body: bool = False
    """The route declares a body model (JSON or a form) rather than reading its request."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def action(self) -> Action:
        """The one action the route performs (the inventory test checks there is one)."""
        [action] = self.actions
        return action

    @property
    def is_public(self) -> bool:
        return self.key in PUBLIC

    @property
    def is_device_route(self) -> bool:
        return self.key in DEVICE_ROUTES

    @property
    def is_stream(self) -> bool:
        return self.key in STREAMS

    @property
    def reads_body(self) -> bool:
        return self.declares_body or self.key in READS_ITS_OWN_BODY

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))

    @property
    def problem_type(self) -> str:
        """The media type of this route's errors: OperationOutcomes under /fhir/."""
        if self.path.startswith("/fhir/"):
            return "application/fhir+json"
        return "application/problem+json"

    def holders(self) -> list[str]:
        """Members of St Mary's whose role may perform the route's action."""
        return [m for r, m in MEMBERS.items() if self.action in ROLE_PERMISSIONS[r]]

    def lackers(self) -> list[str]:
        """Members of St Mary's whose role may not."""
        return [m for r, m in MEMBERS.items() if self.action not in ROLE_PERMISSIONS[r]]

    def owner(self) -> str:
        """The member of Mallory Health who may call this route on Mallory's objects."""
        if self.action in ROLE_PERMISSIONS[Role.CLINICIAN]:
            return OUTSIDERS[Role.CLINICIAN]
        return OUTSIDERS[Role.ADMIN]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Probe:
    """One request to one route, and which of an estate's objects it names."""

    endpoint: Endpoint
    url: str
    body: Any
    names_in_path: bool
    names_elsewhere: bool
    """The query or the body names an object (a filter, a patient to assign)."""

    @property
    def names_objects(self) -> bool:
        return self.names_in_path or self.names_elsewhere

    def echoes(self) -> str:
        """What the request itself says: an answer may repeat it without leaking anything."""
        return self.url + (json.dumps(self.body) if self.body is not None else "")

    def __str__(self) -> str:
        return f"{self.endpoint.method} {self.url}"


def probes(endpoint: Endpoint, estate: Estate, ids: dict[str, str] | None = None) -> list[Probe]:
    """The requests that exercise `endpoint` on the estate's objects (or on `ids`): the plain
    request, and for a listing that can be filtered by object, the filtered one too."""
    values = estate.ids | (ids or {})
    path = endpoint.path.format(**{name: values[name] for name in endpoint.path_params})
    make = BODIES.get(endpoint.key)
    body = make(estate) if make is not None else None
    named = {value for key, value in values.items() if key not in NOT_IDS}
    body_names = body is not None and any(value in json.dumps(body) for value in named)
    in_path = bool(endpoint.path_params)
    filters = [f"{p}={values[p]}" for p in endpoint.query_params if p in OBJECT_FILTERS]
    search, required = SEARCHES.get(endpoint.key, ("", False))
    if search:
        filters.append(search.format(**values))
    found = [] if required else [Probe(endpoint, path, body, in_path, body_names)]
    if filters:
        found.append(Probe(endpoint, f"{path}?{'&'.join(filters)}", body, in_path, True))
    return found


def placeholder_estate() -> Estate:
    """An estate of made-up ids, to tell which of a route's requests name an object."""
    return Estate("organisation", "admin", "clinician", "device", {k: f"<{k}>" for k in ID_KEYS})


def names_objects(endpoint: Endpoint) -> bool:
    """Whether the route's requests name an object, in the path, a filter or the body."""
    return any(probe.names_objects for probe in probes(endpoint, placeholder_estate()))


ANSWER_SECONDS = 20.0
"""How long a route may take to answer before the suite calls it a failure. A stream a caller
should have been refused never ends; this turns it into a wrong answer rather than a hang."""


async def request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one request; a route silent for ANSWER_SECONDS gets a made-up 599 instead."""
    try:
        return await asyncio.wait_for(
            http.request(method, url, json=body, headers=headers), ANSWER_SECONDS
        )
    except TimeoutError:
        return httpx.Response(599, text=f"no answer within {ANSWER_SECONDS:g} s")


def walk(app: FastAPI) -> Iterator[APIRoute]:
    """Every APIRoute the app serves, through included routers."""

    def descend(items: list[Any]) -> Iterator[APIRoute]:
        for item in items:
            if isinstance(item, APIRoute):
                yield item
            elif hasattr(item, "original_router"):
                yield from descend(item.original_router.routes)

    yield from descend(list(app.routes))


def _calls(dependant: Any) -> Iterator[str]:
    for dependency in dependant.dependencies:
        yield getattr(dependency.call, "__name__", "")
        yield from _calls(dependency)


def actions_of(dependant: Any) -> Iterator[Action]:
    """The policy actions a route's dependencies declare (one, on a protected route)."""
    for dependency in dependant.dependencies:
        action = getattr(dependency.call, "medcloud_action", None)
        if action is not None:
            yield action
        yield from actions_of(dependency)


def endpoints(app: FastAPI) -> list[Endpoint]:
    """The route table: every method of every route the app serves (HEAD aside)."""
    found = []
    for route in walk(app):
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            found.append(
                Endpoint(
                    method,
                    route.path,
                    frozenset(actions_of(route.dependant)),
                    bool(route.include_in_schema),
                    tuple(p.alias for p in route.dependant.query_params),
                    next((c for c in _calls(route.dependant) if c == "current_principal"), ""),
                    route.body_field is not None,
                )
            )
    return found


@functools.cache
def collected() -> tuple[Endpoint, ...]:
    """The route table of an app built (never started) for test collection."""
    with tempfile.TemporaryDirectory() as var_dir:
        app = create_app(Settings(var_dir=Path(var_dir)))
        return tuple(endpoints(app))


def protected() -> list[Endpoint]:
    """Routes that need a token, people's and devices'."""
    return [e for e in collected() if not e.is_public]


def one_of_each_kind() -> list[Endpoint]:
    """A protected route of each kind a token is checked for: by dependency or in the handler,
    for a person or a device, answering problem+json or FHIR OperationOutcomes, streaming."""
    kinds: dict[tuple[str, bool, str, bool], Endpoint] = {}
    for e in protected():
        kinds.setdefault((e.authenticated_by, e.is_device_route, e.problem_type, e.is_stream), e)
    return list(kinds.values())


def for_people() -> list[Endpoint]:
    """Routes for signed-in people (those that declare an action)."""
    return [e for e in protected() if not e.is_device_route]


def run_order(endpoint: Endpoint) -> int:
    """When the owner's request to `endpoint` may go, among the others (lowest first)."""
    if endpoint.method == "DELETE" or endpoint.path.endswith(("/revoke", "/cancel")):
        return 4  # what ends an object, last
    if endpoint.path.endswith("/resume"):
        return 3
    if endpoint.path.endswith("/pause"):
        return 2  # after the device has been offered its update, which a pause withholds
    if endpoint.path.endswith(("/firmware/progress", "/acknowledge")):
        # After the device asked for its update; after the alarm was silenced (an
        # acknowledged alarm may resolve, and a resolved one cannot be silenced).
        return 1
    return 0
