"""Schemathesis holds the served OpenAPI document and the app to each other.

Every operation of the document is called as the organisation's admin (a device's own routes
with that device's token, on its id), with the examples the document gives, the coverage cases
schemathesis derives from each schema (boundaries, missing and extra fields, wrong types,
undeclared methods) and MAX_EXAMPLES generated cases, positive and negative, from a fixed seed,
against the embedded app behind a real socket. Every built-in check runs; docs/security.md
("Contract") lists them and what each one holds.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import orjson
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.engine import events

from medcloud.app import create_app
from medcloud.config import Settings
from tests.contract.conftest import Served

MAX_EXAMPLES = 25
SEED = 20261130
# What schemathesis's positive_data_acceptance takes by default.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
WORKFLOWS = 25
STEPS = 6

# Routes a device calls with its own token, on its own id (tests/integration/identity/
# test_access_matrix.py keeps the same list).
DEVICE_OPERATIONS = frozenset(
    {
        "POST /api/v1/devices/{device_id}/data",
        "POST /api/v1/devices/{device_id}/heartbeat",
        "GET /api/v1/devices/{device_id}/firmware/update",
        "GET /api/v1/devices/{device_id}/firmware/images/{image_id}",
        "POST /api/v1/devices/{device_id}/firmware/progress",
    }
)

# A schema can say a field is a string of at most 64 characters; it cannot say the string
# names a ward of the organisation, or a cursor this server issued, or that `low` lies below
# `high`. Valid data (by the schema) may then be refused with 422, but only for such fields:
# any other field named in the refusal means the schema promises more than the server takes.
SERVER_CHECKED_EVERYWHERE = (
    r"query\.cursor",  # a position only this server issues
    r"header\.last-event-id",  # likewise, in the alarm stream
    r"(.*\.)?\w*_ids?(\.\d+)?",  # an object of the organisation, by id
    r"query\.(start|end)",  # a window must not be empty, nor too long
    r"(\w+_)?email",  # deliverable: not a special-use domain such as .test or .invalid
)
SERVER_CHECKED: dict[str, tuple[str, ...]] = {
    # the data-quality gate: a type of the catalogue, in range, in a unit it converts; not
    # taken in the future; one reading or a batch, not both
    "POST /api/v1/devices/{device_id}/data": (
        r"(readings\.\d+\.)?(measurements(\..+)?|timestamp)",
        r"readings(\.\d+)?",  # NDJSON: a line that is no reading (the document says "text")
        r"body",
    ),
    # a usable Ed25519 key; a manifest signed by it
    "POST /api/v1/device-models": (r"signing_public_key",),
    "POST /api/v1/device-models/{model_id}/firmware": (r"signature", r"manifest\..*", "file_name"),
    "PUT /api/v1/device-models/{model_id}/firmware/{version}/content": (r"body",),
    # an IANA zone known to this server's zone database; a shift ends after it starts
    "POST /api/v1/on-call": (r"time_zone", r"starts_at", r"ends_at"),
    # not in the future, which only the server's clock knows
    "POST /api/v1/patients": (r"birth_date",),
    "PUT /api/v1/notifications/recipients/{user_id}": (r"time_zone", r"quiet_(start|end)", ""),
    "POST /api/v1/hl7/interfaces": (r"time_zone", r"allowed_addresses(\.\d+)?"),
    # a measurement type of the catalogue, over a horizon the forecaster supports
    "GET /api/v1/patients/{patient_id}/forecast": (r"query\.type", r"query\.horizon"),
    # at most the configured maximum (alerts.max_silence_seconds)
    "POST /api/v1/alerts/{alert_id}/silence": (r"seconds",),
    # rules relate their fields to each other and to the measurement's catalogue entry
    "POST /api/v1/alarm-rules": (
        r"measurement|low|high|hysteresis|delay_seconds|window_seconds|scope|key",
    ),
    "PUT /api/v1/alarm-rules/{rule_id}": (
        r"measurement|low|high|hysteresis|delay_seconds|window_seconds|scope|key",
    ),
    # a rollout's waves rise to 100%; its image is verified and unexpired
    "POST /api/v1/device-models/{model_id}/campaigns": (r"waves", r"from_versions"),
    # the first escalation step at 0 s, the others in order
    "PUT /api/v1/escalation-policies": (r"steps",),
}
# FHIR searches read their parameters themselves, and some need one (the document lists none:
# FHIR's own CapabilityStatement at /metadata does); without it they answer 400.
NEEDS_A_SEARCH_PARAMETER = (
    "GET /fhir/r4/DeviceMetric",
    "GET /fhir/r4/Observation",
    "GET /fhir/r4/Observation/$lastn",
)


def _document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as var_dir:
        document: dict[str, Any] = create_app(Settings(var_dir=Path(var_dir))).openapi()
    return document


CONFIG_BASE: dict[str, Any] = {
    "seed": SEED,
    # Every run starts from nothing: no state kept between runs, in the tree or elsewhere.
    "cache": {"enabled": False},
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "checks": {
        "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]},
    },
    "operations": [
        # The stream never ends by itself: half a second of it is enough to judge.
        {"include-name": "GET /api/v1/alerts/stream", "request-timeout": 0.5},
        {"include-name": "GET /api/v1/readings/latest/{patient_id}/stream", "request-timeout": 0.5},
        # /users/me is also /users/{user_id} with the id "me": routing sends a PATCH there
        # (404, no such user), so its Allow names PATCH, which this path's item does not.
        {
            "include-name": "GET /api/v1/users/me",
            "checks": {
                "allow_header_conformance": {"enabled": False},
                "unsupported_method": {"enabled": False},
            },
        },
        *(
            {
                "include-name": label,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [
                            *ACCEPTED,
                            "400",
                        ]
                    }
                },
            }
            for label in NEEDS_A_SEARCH_PARAMETER
        ),
    ],
}
# NDJSON readings are documented as one string of lines: sent as the text it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schema = schemathesis.openapi.from_dict(
    _document(), config=SchemathesisConfig.from_dict(CONFIG_BASE)
)


@schemathesis.check
def refusals_name_only_what_the_server_checks(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """A schema-valid request refused with 422 names only fields the schema cannot judge."""
    del ctx
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code != 422:
        return None
    allowed = re.compile(
        "|".join(
            f"(?:{pattern})"
            for pattern in (
                *SERVER_CHECKED_EVERYWHERE,
                *SERVER_CHECKED.get(case.operation.label, ()),
            )
        ),
        re.DOTALL,  # a generated key may hold any character
    )
    fields = [error["field"] for error in orjson.loads(response.content).get("errors", [])]
    unexpected = [field for field in fields if not allowed.fullmatch(field)]
    if unexpected or not fields:
        raise AssertionError(
            f"valid data refused for {', '.join(unexpected) or 'no named field'}: "
            "the schema should say so"
        )
    return None


def _credentials(case: schemathesis.Case[Any], served: Served) -> dict[str, str]:
    """The admin's bearer token, or the served device's on a device's own routes; none when the
    case is about leaving the credentials out or mangling them."""
    if case.operation.schema.is_security_param_negated(case):
        return {}
    token = served.device_token if case.operation.label in DEVICE_OPERATIONS else served.admin_token
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
def test_the_api_keeps_its_contract(case: schemathesis.Case[Any], served: Served) -> None:
    # Credentials are set per call: coverage cases are built when tests are collected, before
    # the server (and so any token) exists.
    negative_path = case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)
    if case.operation.label in DEVICE_OPERATIONS and not negative_path:
        # A device may only write to its own path; a drawn id would be refused before its body
        # was read.
        case.path_parameters = {**(case.path_parameters or {}), "device_id": served.device_id}
    case.call_and_validate(
        base_url=served.url,
        headers=_credentials(case, served),
    )


def test_workflows_follow_the_documented_links(served: Served) -> None:
    """Create objects and go on with them as the served document's links say (read, change,
    delete), with every check after every step: schemathesis's stateful phase, run by its
    engine, which expects the server's state to change under it."""
    config = SchemathesisConfig.from_dict(
        {
            **CONFIG_BASE,
            "base-url": served.url,
            "headers": {"Authorization": f"Bearer {served.admin_token}"},
            "generation": {"max-examples": WORKFLOWS, "database": "none"},
            "phases": {
                "examples": {"enabled": False},
                "coverage": {"enabled": False},
                "fuzzing": {"enabled": False},
                "stateful": {"max-steps": STEPS},
            },
        }
    )
    workflows = schemathesis.openapi.from_url(f"{served.url}/openapi.json", config=config)
    problems: list[str] = []
    scenarios = 0
    for event in schemathesis.engine.from_schema(workflows).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            problems += [
                f"{check.name}: {check.failure_info.failure.title}"
                for nodes in event.recorder.checks.values()
                for check in nodes
                if check.failure_info is not None
            ]
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            problems.append(f"the run failed: {event.exception!r}")
    assert scenarios > 0
    assert problems == []
