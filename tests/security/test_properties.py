"""OWASP API3 (broken object property level authorisation): a write cannot set a property its
body does not declare (mass assignment), and no answer shows a secret after the one that
issued it: passwords, their hashes, tokens, their hashes, TOTP and webhook secrets, keys.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from medcloud.platform.security import Role, hash_device_token
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.security import routes
from tests.security.conftest import Deployment
from tests.support.cast import PASSWORD

pytestmark = pytest.mark.asyncio(loop_scope="package")

# Properties a server keeps for itself; a client that sends one is refused, not obeyed.
SERVER_OWNED = {
    "id": "00000000-0000-4000-8000-000000000000",
    "organisation_id": "00000000-0000-4000-8000-000000000001",
    "role": "admin",
    "is_admin": True,
    "created_at": "2000-01-01T00:00:00Z",
    "password_hash": "chosen-by-the-client",
    "owner_id": "00000000-0000-4000-8000-000000000002",
    "version": 99,
}


def declared(deployment: Deployment, endpoint: routes.Endpoint) -> set[str]:
    """The properties the route's request body declares in the OpenAPI document."""
    document = deployment.api.app.openapi()
    operation = document["paths"][endpoint.path][endpoint.method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if "$ref" in node:
            node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        found |= set(node.get("properties", {}))
        pending += node.get("anyOf", []) + node.get("allOf", []) + node.get("oneOf", [])
    return found


# Its body is a firmware image's bytes, whatever they look like.
IMAGE_CONTENT = ("PUT", "/api/v1/device-models/{model_id}/firmware/{version}/content")


def json_writes() -> list[routes.Endpoint]:
    """Writes that take a JSON object (a route without a body ignores what is sent; one
    without a sample body fails test_inventory.py)."""
    return [
        e
        for e in routes.protected()
        if e.reads_body
        and e.key in routes.BODIES
        and e.key != IMAGE_CONTENT
        and isinstance(routes.BODIES[e.key](routes.placeholder_estate()), dict)
    ]


def caller(endpoint: routes.Endpoint) -> str:
    """Someone St Mary's allows to call the route (its device, for a device route)."""
    return "peters_oximeter" if endpoint.is_device_route else endpoint.holders()[0]


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=str(e)) for e in json_writes()])
async def test_a_write_refuses_properties_its_body_does_not_declare(
    deployment: Deployment, endpoint: routes.Endpoint
) -> None:
    [probe, *_] = routes.probes(endpoint, deployment.ours)
    extra = {k: v for k, v in SERVER_OWNED.items() if k not in declared(deployment, endpoint)}
    assert extra, f"{endpoint} declares every server-owned property"
    response = await deployment.api.http.request(
        endpoint.method,
        probe.url,
        json=probe.body | extra,
        headers=deployment.cast.auth(caller(endpoint)),
    )
    assert response.status_code == 422, response.text
    named = {error["field"] for error in response.json().get("errors", [])}
    assert set(extra) <= named, response.text


# An update of each kind of object, and how to read the object back.
UPDATES = [
    ("PATCH", "/api/v1/users/{user_id}", "/api/v1/users/{user_id}"),
    ("PATCH", "/api/v1/patients/{patient_id}", "/api/v1/patients/{patient_id}"),
    ("PATCH", "/api/v1/devices/{device_id}", "/api/v1/devices/{device_id}"),
]


@pytest.mark.parametrize("method,path,read", UPDATES, ids=[u[1] for u in UPDATES])
@pytest.mark.parametrize("field", ["organisation_id", "id", "role", "created_at"])
async def test_an_update_naming_a_server_owned_property_changes_nothing(
    deployment: Deployment, method: str, path: str, read: str, field: str
) -> None:
    alice = deployment.cast.auth("alice_admin")
    ids = deployment.ours.ids
    before = await deployment.api.http.get(read.format(**ids), headers=alice)
    assert before.status_code == 200, before.text
    # The role a user may be given is declared: sent alone it is no mass assignment, and
    # what an admin may do with it is the route's business.
    value = deployment.theirs.organisation_id if field != "role" else Role.ADMIN.value
    body = {field: value} if not (field == "role" and "users" in path) else {"is_admin": True}
    response = await deployment.api.http.request(
        method, path.format(**ids), json=body, headers=alice
    )
    after = await deployment.api.http.get(read.format(**ids), headers=alice)
    assert response.status_code == 422, response.text
    assert after.json() == before.json()


async def secrets_issued(deployment: Deployment) -> dict[str, str]:
    """Issue one of every kind of secret the API hands out, and return them by name."""
    http, alice = deployment.api.http, deployment.cast.auth("alice_admin")
    invited = await http.post(
        "/api/v1/users",
        json={"email": "mfa.probe@stmary.example", "role": "auditor"},
        headers=alice,
    )
    assert invited.status_code == 201, invited.text
    invitation = invited.json()["invitation_token"]
    accepted = await http.post(
        "/api/v1/auth/invitations/accept", json={"token": invitation, "password": PASSWORD}
    )
    assert accepted.status_code == 204, accepted.text
    enrolled = await http.post(
        "/api/v1/auth/mfa/enrol",
        data={"username": "mfa.probe@stmary.example", "password": PASSWORD},
    )
    assert enrolled.status_code == 200, enrolled.text
    session = await http.post(
        "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    hook = await http.post(
        "/api/v1/webhooks", json={"url": "https://hooks.ehr.example/secrets"}, headers=alice
    )
    rotated = await http.post(
        f"/api/v1/devices/{deployment.cast.devices['olives_monitor']['id']}/credentials/rotate",
        json={"grace_seconds": 7 * 24 * 3600},
        headers=alice,
    )
    for response in (session, hook, rotated):
        assert response.status_code in (200, 201), response.text
    keys = deployment.api.app.state.runtime.tokens.keys
    found = {
        "the bootstrap password": ADMIN_PASSWORD,
        "the cast's password": PASSWORD,
        "an invitation token": invitation,
        "an invitation token's hash": hashlib.sha256(invitation.encode()).hexdigest(),
        "a TOTP secret": enrolled.json()["secret"],
        "a refresh token": session.json()["refresh_token"],
        "a refresh token's hash": hashlib.sha256(
            session.json()["refresh_token"].encode()
        ).hexdigest(),
        "a webhook secret": hook.json()["secret"],
        "a rotated device token": rotated.json()["token"],
        "the JWT signing key": keys.private_key.private_bytes_raw().hex(),
        "the JWT signing key, base64": base64.urlsafe_b64encode(
            keys.private_key.private_bytes_raw()
        )
        .decode()
        .rstrip("="),
    }
    for name, device in deployment.cast.devices.items():
        found[f"{name}'s token"] = device["token"]
        found[f"{name}'s token hash"] = hash_device_token(device["token"])
    return found


# Text that only a secret or its hash could be, whatever its value: an argon2 hash with its
# parameters, a PEM private key, a webhook secret's prefix.
SECRET_SHAPES = ["$argon2id$v=", "PRIVATE KEY-----", "whsec_"]
# Properties no answer may have (JSON keys at any depth).
SECRET_KEYS = {"password", "password_hash", "token_hash", "totp_secret", "secret", "private_key"}


def documents(response: httpx.Response) -> list[Any]:
    """The JSON documents of an answer: one, a line each (NDJSON), or none (CSV, text)."""
    media_type = response.headers["content-type"]
    if "ndjson" in media_type:
        return [json.loads(line) for line in response.text.splitlines() if line]
    if "json" in media_type:
        return [response.json()]
    return []


def keys_of(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from keys_of(value)
    elif isinstance(document, list):
        for item in document:
            yield from keys_of(item)


async def test_no_answer_shows_a_secret_after_the_one_that_issued_it(
    deployment: Deployment,
) -> None:
    secrets = await secrets_issued(deployment)
    reads: list[tuple[str, str]] = []
    for endpoint in routes.collected():
        if endpoint.method != "GET" or endpoint.is_stream or endpoint.key in routes.PUBLIC:
            continue
        if endpoint.is_device_route:
            whom = ["peters_oximeter"]
        else:
            # The admin sees most; carol sees what her care team sees, her own details too.
            whom = sorted({endpoint.holders()[0]} | ({"carol_clinician"} & set(endpoint.holders())))
        reads += [(p.url, who) for p in routes.probes(endpoint, deployment.ours) for who in whom]
    for public in ("/.well-known/jwks.json", "/metrics", "/openapi.json", "/health", "/ready"):
        reads.append((public, ""))
    for export in ("csv", "ndjson"):
        reads.append((f"/api/v1/audit?format={export}", "audrey_auditor"))
    slots = asyncio.Semaphore(32)

    async def read(url: str, who: str) -> httpx.Response:
        async with slots:
            return await deployment.api.http.get(
                url, headers=deployment.cast.auth(who) if who else {}
            )

    answers = await asyncio.gather(*(read(url, who) for url, who in reads))
    shown = []
    for (url, who), response in zip(reads, answers, strict=True):
        assert response.status_code == 200, f"{url} as {who}: {response.status_code}"
        shown += [
            f"{url} as {who}: {name}" for name, value in secrets.items() if value in response.text
        ]
        shown += [f"{url} as {who}: {shape}" for shape in SECRET_SHAPES if shape in response.text]
        if url != "/openapi.json":  # which names the schemas of sign-in and webhooks
            found = SECRET_KEYS & set(keys_of(documents(response)))
            shown += [f"{url} as {who}: {key}" for key in sorted(found)]
    assert shown == []


async def test_the_published_keys_are_public_halves_only(deployment: Deployment) -> None:
    response = await deployment.api.http.get("/.well-known/jwks.json")
    for key in response.json()["keys"]:
        assert set(key) <= {"kty", "crv", "alg", "use", "kid", "x"}, key
