"""The one mapping of errors to problem+json: a busy or unreachable database is a 503 to come
back after, not a 500."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI

from medcloud.platform.errors import install_error_handlers


def app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    "error",
    [
        sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked")),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
    ],
)
async def test_a_busy_database_is_answered_503_with_retry_after(error: Exception) -> None:
    transport = httpx.ASGITransport(app=app_raising(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fails")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_any_other_failure_is_a_500_problem() -> None:
    transport = httpx.ASGITransport(
        app=app_raising(RuntimeError("boom")), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fails")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
