"""An HTTP client for the app under test, with the named cast's helpers."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from medcloud.app import create_app
from medcloud.config import Settings

T = TypeVar("T")


@dataclass
class HttpApi:
    """medcloud over HTTP, wherever it runs, plus what the tests keep reaching for."""

    http: httpx.AsyncClient

    async def token(self, email: str, password: str) -> str:
        response = await self.http.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def register_device(
        self, token: str, serial: str = "PO-100", patient_id: str | None = None
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/api/v1/devices",
            json={
                "serial_number": serial,
                "model": "PulseOx 2",
                "manufacturer": "Acme Medical",
                "patient_id": patient_id,
            },
            headers=bearer(token),
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def create_patient(self, token: str, identifier: str = "MRN-0001") -> str:
        """Register a patient (in no ward) and return its id."""
        response = await self.http.post(
            "/api/v1/patients",
            json={
                "identifier_system": "urn:oid:2.16.840.1.113883.2.1.4.1",
                "identifier_value": identifier,
                "family_name": "Doe",
                "given_name": "Pat",
                "birth_date": "1948-03-02",
            },
            headers=bearer(token),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def send(self, device: dict[str, Any], body: Any, **kwargs: Any) -> httpx.Response:
        return await self.http.post(
            f"/api/v1/devices/{device['id']}/data",
            json=body,
            headers=bearer(device["token"]),
            **kwargs,
        )

    async def readings(self, token: str, device_id: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/api/v1/devices/{device_id}/data", params=params, headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def alerts(self, token: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get("/api/v1/alerts", params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def wait_for_alerts(self, token: str, count: int) -> list[dict[str, Any]]:
        """Poll until at least `count` alerts exist (delivery is asynchronous)."""
        alerts: list[dict[str, Any]] = []

        async def enough() -> bool:
            alerts[:] = await self.alerts(token)
            return len(alerts) >= count

        await eventually(enough)
        return alerts


@dataclass
class Api(HttpApi):
    """The app under test, in this process, over HTTP."""

    app: FastAPI


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout: float = 15.0) -> T:
    """Call `probe` until it returns something truthy or `timeout` passes; return the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def reading(at: dt.datetime | None = None, **measurements: float) -> dict[str, Any]:
    return {"timestamp": (at or now()).isoformat(), "measurements": measurements}


@asynccontextmanager
async def running(settings: Settings, **kwargs: Any) -> AsyncIterator[Api]:
    """Start the app with its lifespan and yield a client to it."""
    app = create_app(settings, **kwargs)
    # Shutdown lets the relay finish its batch; after a flood of events that takes a while.
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://medcloud.test") as http:
            yield Api(http=http, app=app)


HEALTHY_NEWS2 = {
    "respiratory_rate": 16,
    "spo2": 97,
    "spo2_scale": 1,
    "supplemental_oxygen": False,
    "systolic_bp": 125,
    "pulse": 72,
    "consciousness": "A",
    "temperature": 37.0,
}
"""NEWS2 observations that score 0: a body for the calculator that every check accepts."""
