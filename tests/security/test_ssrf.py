"""OWASP API7 (server-side request forgery): the one URL a client can make the server call is
a webhook's, and it may not point at this machine, the cloud's metadata service or the
private network the server sits in, nor leave TLS.

The other URLs the server calls (SMS provider, object store, a verify-only service's JWKS) come
from configuration, never from a request; a token's own `jku`/`x5u` headers are never followed
(tests/integration/identity/test_owasp_api_top10.py, and test_authentication.py here).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from medcloud.notifications.channels import Message, WebhookChannel
from tests.security.conftest import Deployment
from tests.support.receivers import Request, json_answer, receivers

pytestmark = pytest.mark.asyncio(loop_scope="package")

# Property names that carry a URL the server might call.
URL_NAMES = ("url", "uri", "href", "endpoint", "callback", "webhook", "jwks", "link")


def refs(node: Any) -> Iterator[str]:
    """Names of the schemas a schema refers to, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def url_properties(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every (schema, property) of a request body that is, or is named like, a URL."""
    schemas = document["components"]["schemas"]
    pending = [
        name
        for operations in document["paths"].values()
        for operation in operations.values()
        for name in refs(operation.get("requestBody", {}))
    ]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for prop, spec in schemas[name].get("properties", {}).items():
            formats = {node.get("format") for node in walk_schemas(spec)}
            if formats & {"uri", "url"} or any(part in prop.lower() for part in URL_NAMES):
                yield name, prop
            pending += list(refs(spec))


def walk_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk_schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_schemas(item)


async def test_the_only_url_a_request_can_give_the_server_is_a_webhooks(
    deployment: Deployment,
) -> None:
    found = set(url_properties(deployment.api.app.openapi()))
    assert found == {("WebhookIn", "url")}


def this_machines_name() -> str:
    """A name that resolves to this machine or its private network (skip if there is none)."""
    name = socket.gethostname()
    try:
        address = ipaddress.ip_address(socket.gethostbyname(name))
    except OSError:
        pytest.skip("the host's own name does not resolve")
    if address.is_global:
        pytest.skip("the host's own name resolves to a public address")
    return name


REFUSED_TODAY = [
    "http://127.0.0.1:5432/",
    "http://localhost/admin",
    "http://sub.localhost/",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    # Spellings of 127.0.0.1 that the URL parser normalises before the check sees them.
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://127.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "ftp://files.example.org/",
    "dict://127.0.0.1:11211/",
]
# Over https, so that each is refused for where it points, not for leaving TLS.
INSIDE_OVER_TLS = [
    "https://10.0.0.1/",
    "https://172.16.0.1/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://[fd00::1]/",
    "https://[::ffff:169.254.169.254]/latest/meta-data/",
    "https://[::ffff:127.0.0.1]:5432/",
    "https://localhost./",
    "https://metadata.google.internal/computeMetadata/v1/",
]
PLAIN = "http://hooks.ehr.example/medcloud"


def targets() -> list[object]:
    return [
        *(pytest.param(url, id=url) for url in [*REFUSED_TODAY, *INSIDE_OVER_TLS, PLAIN]),
        pytest.param("this machine's name", id="this machine's name"),
    ]


@pytest.mark.parametrize("target", targets())
async def test_a_webhook_cannot_point_inside_or_leave_tls(
    deployment: Deployment, target: str
) -> None:
    url = f"https://{this_machines_name()}/" if target == "this machine's name" else target
    alice = deployment.cast.auth("alice_admin")
    response = await deployment.api.http.post("/api/v1/webhooks", json={"url": url}, headers=alice)
    if response.status_code == 201:
        # Take it back at once: every alarm of the shared deployment would be sent there.
        removed = await deployment.api.http.delete(
            f"/api/v1/webhooks/{response.json()['id']}", headers=alice
        )
        assert removed.status_code == 204
    assert response.status_code == 422, response.text


async def test_a_public_https_webhook_is_accepted(deployment: Deployment) -> None:
    # What the refusals above are measured against.
    alice = deployment.cast.auth("alice_admin")
    response = await deployment.api.http.post(
        "/api/v1/webhooks", json={"url": "https://hooks.ehr.example/medcloud"}, headers=alice
    )
    assert response.status_code == 201, response.text
    removed = await deployment.api.http.delete(
        f"/api/v1/webhooks/{response.json()['id']}", headers=alice
    )
    assert removed.status_code == 204


async def test_the_webhook_sender_follows_no_redirect() -> None:
    # A receiver the check allowed must not bounce the POST on to one it would have refused.
    async with receivers() as start:
        inner = await start(json_answer(200, {"id": "inner"}))

        async def bounce(_: Request) -> tuple[int, dict[str, str], bytes]:
            return 307, {"Location": f"{inner.url}/admin"}, b""

        outer = await start(bounce)
        channel = WebhookChannel(timeout=5)
        try:
            outcome = await channel.send(
                Message(
                    idempotency_key="security:redirect",
                    to=f"{outer.url}/hook",
                    subject="test",
                    text="test",
                    payload={"event": "test"},
                    secret="whsec_test",
                )
            )
        finally:
            await channel.close()
    assert outcome.status != "delivered"
    assert len(outer.requests) == 1
    assert inner.requests == []
