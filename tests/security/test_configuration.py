"""OWASP API8 (security misconfiguration): every answer of every route is hardened the same
way, a failure tells the caller nothing about the server, and the production profile leaves
only the allow-listed routes open.

CORS, HSTS and the documentation pages' own content policies are tested where the edge is
built (tests/integration/platform/test_edge.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import structlog
from pydantic import SecretStr

from medcloud.config import HttpSettings
from medcloud.platform.http import get_uow
from tests.security import routes
from tests.security.conftest import Deployment, own_settings
from tests.support.client import running

pytestmark = pytest.mark.asyncio(loop_scope="package")

# docs/security.md, "The edge": on every answer.
HARDENING = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# On every answer that is not one of the documentation pages, which set their own.
API_POLICY = "default-src 'none'"


def hardening_missing(response: httpx.Response) -> list[str]:
    """The hardening headers an answer lacks or has wrong."""
    missing = [
        f"{k}: {response.headers.get(k)}"
        for k, v in HARDENING.items()
        if response.headers.get(k) != v
    ]
    if API_POLICY not in response.headers.get("content-security-policy", ""):
        missing.append(
            f"content-security-policy: {response.headers.get('content-security-policy')}"
        )
    if not response.headers.get("x-request-id"):
        missing.append("x-request-id")
    return missing


async def test_every_answer_of_every_route_is_hardened(deployment: Deployment) -> None:
    # One refusal and, for reads, one success per route; and the answers that come from
    # elsewhere than a route: no route, the wrong method, too large, malformed.
    requests: list[tuple[str, str, str | None]] = []
    for endpoint in routes.collected():
        if endpoint.key in {("GET", "/docs"), ("GET", "/redoc")}:
            continue
        [probe, *_] = routes.probes(endpoint, deployment.ours)
        requests.append((endpoint.method, probe.url, None))
        if endpoint.method == "GET" and not endpoint.is_public and not endpoint.is_stream:
            who = "peters_oximeter" if endpoint.is_device_route else endpoint.holders()[0]
            requests.append((endpoint.method, probe.url, who))
    requests += [("GET", "/no/such/path", None), ("DELETE", "/health", None)]
    slots = asyncio.Semaphore(32)

    async def send(method: str, url: str, who: str | None) -> httpx.Response:
        async with slots:
            return await deployment.api.http.request(
                method, url, headers=deployment.cast.auth(who) if who else {}
            )

    answers = await asyncio.gather(*(send(*r) for r in requests))
    alice = deployment.cast.auth("alice_admin") | {"content-type": "application/json"}
    http = deployment.api.http
    answers += [
        await http.post(
            "/api/v1/wards", content=b"{" + b" " * (11 * 1024 * 1024) + b"}", headers=alice
        ),
        await http.post("/api/v1/wards", content=b"{not json", headers=alice),
        await http.post("/api/v1/wards", json={"name": ""}, headers=alice),
    ]
    statuses = {r.status_code for r in answers}
    assert {200, 401, 404, 405, 413, 400, 422} <= statuses
    wrong = [
        f"{r.request.method} {r.request.url.path} {r.status_code}: {m}"
        for r in answers
        if (m := hardening_missing(r))
    ]
    assert wrong == []


BOOM = "boom: SELECT password_hash FROM user_account -- /srv/medcloud/secret.py"


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def failure(deployment: Deployment) -> AsyncIterator[httpx.Response]:
    """The answer to a request whose handling raised an unexpected error."""
    app = deployment.api.app

    def broken() -> None:
        raise RuntimeError(BOOM)

    # The app's own client raises what the app raised; this one answers as a server would.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    app.dependency_overrides[get_uow] = broken
    # Log the failure as a server does (JSON, platform/logging.py): structlog's default console
    # renderer, which the test process keeps, takes seconds to draw the traceback.
    saved = structlog.get_config()
    structlog.configure(
        processors=[structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    )
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://medcloud.test") as http:
            yield await http.get("/api/v1/users/me", headers=deployment.cast.auth("alice_admin"))
    finally:
        structlog.configure(**saved)
        del app.dependency_overrides[get_uow]


async def test_an_unexpected_failure_is_a_plain_500_that_names_nothing_inside(
    failure: httpx.Response,
) -> None:
    assert failure.status_code == 500
    assert failure.headers["content-type"].startswith("application/problem+json")
    for inside in ("boom", "password_hash", "secret.py", "RuntimeError", "Traceback", 'File "'):
        assert inside not in failure.text
    assert failure.json()["request_id"]


async def test_an_unexpected_failure_is_hardened_like_every_other_answer(
    failure: httpx.Response,
) -> None:
    assert failure.status_code == 500
    assert hardening_missing(failure) == []


# What production leaves open to anyone: probes, keys, signing in, and what authenticates by
# what it carries. Everything else public in development is the operators'.
OPEN_IN_PRODUCTION = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/fhir/r4/metadata"),
}
OPERATORS = {
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
}


async def test_production_hides_the_operator_pages_and_development_shows_them(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token = "operator-token-for-the-test"
    answers: dict[str, dict[tuple[str, str], int]] = {}
    for profile in ("development", "production"):
        var_dir: Path = tmp_path_factory.mktemp(profile) / "var"
        async with (
            own_settings(
                backend,
                var_dir,
                request,
                profile=profile,
                http=HttpSettings(operator_token=SecretStr(token)),
            ) as settings,
            running(settings) as api,
        ):
            found = {}
            for method, path in sorted(OPEN_IN_PRODUCTION | OPERATORS):
                anonymous = await api.http.request(method, path)
                guessed = await api.http.request(
                    method, path, headers={"Authorization": "Bearer a-guess"}
                )
                operator = await api.http.request(
                    method, path, headers={"Authorization": f"Bearer {token}"}
                )
                found[(method, path)] = anonymous.status_code
                if profile == "production" and (method, path) in OPERATORS:
                    assert guessed.status_code == 404, path
                    assert operator.status_code == 200, path
            answers[profile] = found
    pages = {k: v for k, v in answers["production"].items() if k in OPERATORS}
    assert set(pages.values()) == {404}
    assert {
        k: v for k, v in answers["production"].items() if k in OPEN_IN_PRODUCTION
    } == dict.fromkeys(OPEN_IN_PRODUCTION, 200)
    assert set(answers["development"].values()) == {200}


async def test_the_acknowledge_page_shows_its_token_as_text_never_as_markup(
    deployment: Deployment,
) -> None:
    hostile = '"><script>alert(document.domain)</script><img src=x onerror=alert(1)>'
    response = await deployment.api.http.get(
        "/api/v1/notifications/acknowledge", params={"token": hostile}
    )
    if response.status_code == 200:
        assert "<script>alert" not in response.text
        assert "<img src=x" not in response.text
    else:
        assert response.status_code in (400, 403, 422), response.text


async def test_the_app_is_not_in_debug_mode(deployment: Deployment) -> None:
    assert deployment.api.app.debug is False
