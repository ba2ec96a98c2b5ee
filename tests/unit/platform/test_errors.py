"""The one mapping of errors to problem+json: a busy or unreachable database is a 503 to come
back after, not a 500."""

from __future__ import annotations

import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI

from medcloud.platform.errors import install_error_handlers


class StartingUp(Exception):
    """What asyncpg raises while PostgreSQL recovers from a crash (as the driver's error)."""

    sqlstate = "57P03"


class Violation(Exception):
    sqlstate = "23505"


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
        # A restarted PostgreSQL: pooled connections are closed, new ones refused, then told
        # the server is starting up. Nothing was written in any of these.
        sqlalchemy.exc.InterfaceError("SAVEPOINT x", {}, Exception("connection is closed")),
        ConnectionRefusedError(111, "Connection refused"),
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, StartingUp("the database system is starting up")),
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        # The shared cache, down or not answering.
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ],
)
async def test_a_busy_database_is_answered_503_with_retry_after(error: Exception) -> None:
    transport = httpx.ASGITransport(app=app_raising(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fails")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "error",
    [RuntimeError("boom"), sqlalchemy.exc.DBAPIError("INSERT", {}, Violation("duplicate key"))],
)
async def test_any_other_failure_is_a_500_problem(error: Exception) -> None:
    transport = httpx.ASGITransport(app=app_raising(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fails")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
