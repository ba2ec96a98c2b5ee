"""Operational endpoints: liveness, readiness, Prometheus metrics, and the API's own
documentation pages, which in the production profile only operators see."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from medcloud import __version__
from medcloud.platform.errors import NotFound, problem_response
from medcloud.platform.http import RuntimeDep

router = APIRouter(tags=["operations"])

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"

READY_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Answer while the process is alive."""
    return {"status": "ok", "version": __version__}


@router.get("/ready", response_model=None)
async def ready(request: Request, runtime: RuntimeDep) -> Response:
    """Answer 200 when the database (and its read replica, if any), bus and cache are reachable,
    else 503 naming what is not."""

    async def answers(engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    database = runtime.database
    checks = {
        "database": answers(database.reader),
        "bus": runtime.bus.ping(),
        "cache": runtime.cache.ping(),
    }
    if database.replica is not database.reader:
        checks["replica"] = answers(database.replica)
    failed: list[str] = []
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, READY_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001  (any failure means not ready)
            failed.append(name)
    if failed:
        return problem_response(
            status=503,
            slug="not-ready",
            title="Not ready",
            detail="unreachable: " + ", ".join(failed),
            request=request,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "checks": dict.fromkeys(checks, "ok")})


async def operator_only(request: Request, runtime: RuntimeDep) -> None:
    """In the production profile, let through only callers presenting the operator token.

    Metrics name routes and volumes and the document maps every route: useful to an attacker,
    needed by no patient-facing client. Without a token configured they are hidden outright
    (404, as for a path that does not exist) rather than refused, so nothing says they are
    there."""
    settings = runtime.settings
    if settings.profile != "production":
        return
    token = settings.http.operator_token
    presented = request.headers.get("authorization", "")
    expected = f"Bearer {token.get_secret_value()}" if token is not None else None
    if expected is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise NotFound("no such resource")


OperatorOnly = Depends(operator_only)


@router.get(
    "/metrics", response_model=None, response_class=PlainTextResponse, dependencies=[OperatorOnly]
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Expose Prometheus metrics."""
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


docs_router = APIRouter(include_in_schema=False, dependencies=[OperatorOnly])


@docs_router.get(OPENAPI_PATH)
async def openapi_document(request: Request) -> JSONResponse:
    """The OpenAPI document of the contexts this process serves."""
    document: dict[str, Any] = request.app.openapi()
    return JSONResponse(document)


@docs_router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over the document, with a content policy that lets run only its own script."""
    page = get_swagger_ui_html(openapi_url=OPENAPI_PATH, title=f"{request.app.title} - API")
    return _with_policy(page, _swagger_policy(bytes(page.body)))


@docs_router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the document."""
    page = get_redoc_html(openapi_url=OPENAPI_PATH, title=f"{request.app.title} - API")
    return _with_policy(page, REDOC_POLICY)


# The pages load their bundles from a CDN (nothing to build or vendor to run medcloud); the
# policies allow that origin and nothing else, and the one inline script of Swagger UI by its
# hash rather than every inline script.
_CDN = "https://cdn.jsdelivr.net"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
REDOC_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_CDN}",
        "style-src 'unsafe-inline' https://fonts.googleapis.com",
        "font-src https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com",
        "connect-src 'self'",
        "worker-src blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)


def _swagger_policy(page: bytes) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src {_CDN} {hashes}; style-src {_CDN} 'unsafe-inline'; "
        "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def _with_policy(page: HTMLResponse, policy: str) -> HTMLResponse:
    page.headers["content-security-policy"] = policy
    return page
