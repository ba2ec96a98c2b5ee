"""medcloud split as the reference design deploys it: every context its own API and worker
processes over PostgreSQL, RabbitMQ and Redis, nginx in front with the configuration the route
table renders, two replicas of the ingest API. Everything below goes through nginx."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from medcloud.config import Settings
from medcloud.gateway import topology
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.client import HttpApi, eventually, now, reading
from tests.support.processes import free_port, settings_env

pytestmark = pytest.mark.services


@pytest.fixture
def backend() -> str:
    # Split needs what only the real services give: a bus and a database between processes.
    return "services"


@pytest.fixture
async def split(settings: Settings, tmp_path: Path) -> AsyncIterator[topology.State]:
    env = settings_env(
        settings,
        # The machine's broker is shared with other tests' subscribers: this one stays off it.
        MEDCLOUD_MQTT__URL="",
        MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL=ADMIN_EMAIL,
        MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    directory = tmp_path / "split"
    state = await asyncio.to_thread(
        topology.up,
        directory,
        listen=f"127.0.0.1:{free_port()}",
        replicas={"ingest": 2},
        environ=env,
        timeout=240,
    )
    try:
        yield state
    finally:
        stopped = await asyncio.to_thread(topology.down, directory)
        assert len(stopped) == len(state.processes)
        assert not [p.name for p in state.processes if topology.running(p)]


async def test_the_split_topology_serves_every_context_through_nginx(
    split: topology.State, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=split.base_url, timeout=30) as http:
        api = HttpApi(http)

        # One address for every context, with the gateway's request id on every answer.
        signed_in = await http.post(
            "/api/v1/auth/token",
            data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            headers={"X-Request-ID": "ward-7:trace-1"},
        )
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.headers["x-request-id"] == "ward-7:trace-1"
        assert signed_in.headers["x-gateway"].startswith("medcloud-nginx/")
        token = signed_in.json()["access_token"]
        replaced = await http.get("/health", headers={"X-Request-ID": "not one; of ours"})
        assert replaced.status_code == 200

        # Ingest stores, the bus carries it to analytics, which raises the alarm.
        device = await api.register_device(token)
        sent = await api.send(device, reading(heart_rate=165))
        assert sent.status_code == 201, sent.text
        alarms = await eventually(lambda: api.alerts(token), timeout=60)
        assert "heart_rate" in {alarm["measurement"] for alarm in alarms}

        # What no service serves, and bodies over the limit, are refused at the edge.
        missing = await http.get("/api/v1/nothing-here")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        too_large = await http.post(
            f"/api/v1/devices/{device['id']}/data",
            content=b"x" * (settings.max_body_bytes + 1),
            headers={"Authorization": f"Bearer {device['token']}"},
        )
        assert too_large.status_code == 413
        assert too_large.json()["status"] == 413

        # One ingest replica dies: the other takes every reading, each stored once. A request
        # the dead one may have received is not sent on by nginx (it may have been stored):
        # the device is told 503 and sends it again, as devices do.
        [first, _] = [p for p in split.processes if p.name.startswith("ingest-api")]
        os.kill(first.pid, signal.SIGKILL)
        start = now() - dt.timedelta(seconds=30)
        refused = 0
        for second in range(20):
            body = reading(start + dt.timedelta(seconds=second), heart_rate=80)
            sent = await api.send(device, body)
            while sent.status_code == 503 and refused < 3:
                assert sent.headers["retry-after"] == "5"
                refused += 1
                sent = await api.send(device, body)
            assert sent.status_code == 201, sent.text
        stored = await api.readings(token, device["id"], limit=100)
        assert len(stored) == 21
