"""The app served over HTTP for schemathesis, and the usual in-process client for the rest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from medcloud.app import create_app
from medcloud.config import BusSettings, IdentitySettings, RateLimitSettings, Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, RELAXED_LIMITS
from tests.support import template
from tests.support.client import Api, running


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running(settings) as client:
        yield client


@pytest.fixture
async def alice(api: Api) -> str:
    """Alice, the organisation's admin (created from the bootstrap settings)."""
    return await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)


@dataclass(frozen=True)
class Served:
    """The app behind a real socket, and the admin's access token."""

    url: str
    app: FastAPI
    admin_token: str
    device_id: str
    device_token: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Served]:
    """Serve the embedded app with uvicorn on a free port, for a whole module's tests.

    Schemathesis calls the API synchronously, from its own threads; a real server keeps the
    app's lifespan, relay and consumers in one event loop of their own for the whole run.
    """
    settings = Settings(
        var_dir=tmp_path_factory.mktemp("contract") / "var",
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        bus=BusSettings(retry_backoff_seconds=0.05, relay_poll_seconds=0.1),
        identity=IdentitySettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        # Limits stay on (so their 429 is documented), high enough for a fuzzer's pace.
        rate_limits=RateLimitSettings(
            default=RELAXED_LIMITS, ingest=RELAXED_LIMITS, anonymous=RELAXED_LIMITS
        ),
    )
    template.copy_sqlite_template(sqlite_template, settings)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="on",
            loop="asyncio",
            log_config=None,
            log_level="warning",
            access_log=False,
        )
    )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        response = httpx.post(
            f"{url}/api/v1/auth/token",
            data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        )
        assert response.status_code == 200, response.text
        admin_token = response.json()["access_token"]
        device = httpx.post(
            f"{url}/api/v1/devices",
            json={"serial_number": "CONTRACT-1", "model": "PulseOx 2", "manufacturer": "Acme"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert device.status_code == 201, device.text
        yield Served(
            url=url,
            app=app,
            admin_token=admin_token,
            device_id=device.json()["id"],
            device_token=device.json()["token"],
        )
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        listener.close()
