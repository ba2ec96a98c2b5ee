"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from medcloud import __version__
from medcloud.platform.errors import problem_response
from medcloud.platform.http import RuntimeDep

router = APIRouter(tags=["operations"])

READY_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Answer while the process is alive."""
    return {"status": "ok", "version": __version__}


@router.get("/ready", response_model=None)
async def ready(request: Request, runtime: RuntimeDep) -> Response:
    """Answer 200 when the database, bus and cache are reachable, else 503 naming what is not."""

    async def database() -> None:
        async with runtime.database.reader.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks = {"database": database(), "bus": runtime.bus.ping(), "cache": runtime.cache.ping()}
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


@router.get("/metrics", response_model=None)
async def metrics(runtime: RuntimeDep) -> Response:
    """Expose Prometheus metrics."""
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
