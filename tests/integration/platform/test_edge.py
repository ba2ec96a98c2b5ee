"""The HTTP edge: security headers, CORS from an allow-list, and operator pages that the
production profile keeps to operators."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest
from pydantic import SecretStr

from medcloud.config import Settings
from tests.support.client import Api, running

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

PAGE_ORIGIN = "https://ward.example.org"
OPERATOR_TOKEN = "operator-token-for-tests"


def _with_http(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"http": settings.http.model_copy(update=changes)})


async def test_every_answer_carries_the_security_headers(api: Api, alice: str) -> None:
    for response in (
        await api.http.get("/health"),
        await api.http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {alice}"}),
        await api.http.get("/api/v1/patients"),  # 401
        await api.http.get("/no/such/path"),
    ):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        # Plain HTTP: HSTS would be ignored, and a wrong one is hard to take back.
        assert "strict-transport-security" not in headers


async def test_answers_over_tls_carry_hsts(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://medcloud.test") as tls:
        response = await tls.get("/health")
    assert response.headers["strict-transport-security"] == ("max-age=31536000; includeSubDomains")


async def test_swagger_ui_runs_only_its_own_inline_script(api: Api) -> None:
    page = await api.http.get("/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    # The page's one inline script is allowed by its hash, and no other inline script is.
    (script,) = re.findall(rb"<script>(.*?)</script>", page.content, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    assert f"'sha256-{digest}'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "frame-ancestors 'none'" in policy
    assert policy.count("content-security-policy") == 0
    assert len(page.headers.get_list("content-security-policy")) == 1

    redoc = await api.http.get("/redoc")
    assert redoc.status_code == 200
    assert "script-src https://cdn.jsdelivr.net;" in redoc.headers["content-security-policy"]

    document = await api.http.get("/openapi.json")
    assert document.status_code == 200
    assert document.json()["info"]["title"] == "medcloud"


async def test_cors_answers_only_origins_on_the_allow_list(settings: Settings) -> None:
    async with running(_with_http(settings, cors_origins=[PAGE_ORIGIN])) as api:
        preflight = await api.http.options(
            "/api/v1/patients",
            headers={
                "Origin": PAGE_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PAGE_ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in preflight.headers
        assert preflight.headers["x-request-id"]  # the edge wraps the preflight too

        simple = await api.http.get("/health", headers={"Origin": PAGE_ORIGIN})
        assert simple.headers["access-control-allow-origin"] == PAGE_ORIGIN
        assert "Retry-After" in simple.headers["access-control-expose-headers"]

        stranger = "https://elsewhere.example.com"
        refused = await api.http.options(
            "/api/v1/patients",
            headers={"Origin": stranger, "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        other = await api.http.get("/health", headers={"Origin": stranger})
        assert "access-control-allow-origin" not in other.headers


async def test_no_origin_may_call_from_a_browser_unless_configured(api: Api) -> None:
    response = await api.http.get("/health", headers={"Origin": PAGE_ORIGIN})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("token", [None, OPERATOR_TOKEN])
async def test_production_keeps_metrics_and_docs_to_operators(
    settings: Settings, token: str | None
) -> None:
    secret = SecretStr(token) if token else None
    production = _with_http(settings, operator_token=secret).model_copy(
        update={"profile": "production"}
    )
    async with running(production) as api:
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            assert (await api.http.get(path)).status_code == 404, path
            wrong = await api.http.get(path, headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 404, path
            right = await api.http.get(path, headers={"Authorization": f"Bearer {token}"})
            assert right.status_code == (200 if token else 404), path
        # What probes and devices need stays open.
        assert (await api.http.get("/health")).status_code == 200
        assert (await api.http.get("/ready")).status_code == 200


async def test_an_unexpected_failure_is_a_500_problem_with_the_edge_headers(api: Api) -> None:
    async def fails() -> None:
        raise RuntimeError("a fault no handler knows")

    api.app.add_api_route("/test-only/fails", fails)
    response = await api.http.get("/test-only/fails", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 500
    assert response.json()["request_id"] == "trace-500"
    assert "a fault no handler knows" not in response.text
    # The id that finds the failure in the logs, and the headers every answer carries.
    assert response.headers["x-request-id"] == "trace-500"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-service-version" in response.headers
