"""Over MQTT, nothing sent is lost and nothing is stored twice when the worker is killed.

A Mosquitto of the test's own; `medcloud serve --no-workers` registers the devices (and gives
them broker credentials); a separate `medcloud worker --contexts ingest` runs the MQTT
subscriber. Simulated devices publish uniquely numbered readings at QoS 1 for
MEDCLOUD_KILL_RUN_SECONDS (12 by default); the worker is killed with SIGKILL midway and started
again with the same client id. Then every reading the platform acknowledged to a device is
stored, every reading sent is stored (the broker kept what was not acknowledged for the worker's
persistent session), and none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.ingest.models import Reading, ReadingSeries
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mosquitto import Broker, MqttDevice, mqtt_device, running_broker
from tests.support.processes import free_port, medcloud, settings_env

RUN_SECONDS = float(os.environ.get("MEDCLOUD_KILL_RUN_SECONDS", "12"))
DEVICES = 8
RATE = 40.0
"""Readings per second each device sends (one reading per message)."""
WORKER = ("worker", "--contexts", "ingest")
"""An ingest worker, as deployed for volume: the other contexts' consumers run elsewhere (here
nowhere: what is tested is the readings store)."""
BASE = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)


@dataclass
class Tally:
    """What one simulated device sent and heard."""

    sent: set[int] = field(default_factory=set)
    sent_at: dict[int, float] = field(default_factory=dict)
    broker_acked: set[int] = field(default_factory=set)


def numbered(n: int) -> dict[str, Any]:
    """Reading `n`: its number is its timestamp, in milliseconds after BASE."""
    at = BASE + dt.timedelta(milliseconds=n)
    return {"timestamp": at.isoformat(), "measurements": {"heart_rate": 70}}


async def wait_ready(base: str, log: Path) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} never became ready:\n{log.read_text()[-3000:]}")


async def register(base: str, count: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        signed_in = await client.post(
            "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        auth = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        devices = []
        for n in range(count):
            response = await client.post(
                "/api/v1/devices",
                json={"serial_number": f"KILL-{n}", "model": "PulseOx 2", "manufacturer": "Acme"},
                headers=auth,
            )
            assert response.status_code == 201, response.text
            devices.append(response.json())
        return devices


async def probe(device: MqttDevice, log: Path) -> None:
    """Publish until the worker answers: before its first subscription the broker drops all."""
    for attempt in range(120):
        msg_id = f"probe-{attempt}"
        await device.publish(numbered(-1 - attempt), msg_id=msg_id)
        with contextlib.suppress(AssertionError):
            await device.ack(msg_id, timeout=1.0)
            return
    raise AssertionError(f"the worker never answered:\n{log.read_text()[-3000:]}")


async def publish_for(device: MqttDevice, tally: Tally, seconds: float) -> None:
    """Send numbered readings at RATE for `seconds`, noting what the broker acknowledged."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() - start < seconds:
        tally.sent.add(n)
        tally.sent_at[n] = time.monotonic()
        await device.publish(numbered(n), msg_id=str(n))  # returns on the broker's PUBACK
        tally.broker_acked.add(n)
        n += 1
        await asyncio.sleep(max(0.0, start + n / RATE - loop.time()))


async def stored_numbers(settings: Settings, device_ids: list[str]) -> dict[str, set[int]]:
    """The numbers of the readings stored per device (probes excluded)."""
    runtime = bootstrap(settings)
    try:
        async with runtime.read_sessions() as session:
            rows = await session.execute(
                select(ReadingSeries.device_id, Reading.timestamp)
                .join(ReadingSeries, ReadingSeries.id == Reading.series_id)
                .where(ReadingSeries.device_id.in_(device_ids))
            )
            found: dict[str, set[int]] = {device_id: set() for device_id in device_ids}
            for device_id, timestamp in rows:
                n = round((timestamp - BASE).total_seconds() * 1000)
                if n >= 0:
                    found[device_id].add(n)
            return found
    finally:
        await runtime.database.dispose()


async def row_counts(settings: Settings, device_ids: list[str]) -> tuple[int, int]:
    """(rows, distinct (device, type, timestamp)) among the devices' readings."""
    runtime = bootstrap(settings)
    try:
        async with runtime.read_sessions() as session:
            mine = (
                select(ReadingSeries.device_id, ReadingSeries.type, Reading.timestamp)
                .join(ReadingSeries, ReadingSeries.id == Reading.series_id)
                .where(ReadingSeries.device_id.in_(device_ids))
            )
            rows = await session.scalar(select(func.count()).select_from(mine.subquery()))
            distinct = await session.scalar(
                select(func.count()).select_from(mine.distinct().subquery())
            )
            return int(rows or 0), int(distinct or 0)
    finally:
        await runtime.database.dispose()


def environment(settings: Settings, broker: Broker) -> dict[str, str]:
    mqtt = broker.settings()
    assert mqtt.admin_password is not None
    return settings_env(
        settings,
        MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL=ADMIN_EMAIL,
        MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MEDCLOUD_IDENTITY__ARGON2_TIME_COST="1",
        MEDCLOUD_IDENTITY__ARGON2_MEMORY_KIB="1024",
        MEDCLOUD_IDENTITY__ARGON2_PARALLELISM="1",
        MEDCLOUD_MQTT__URL=mqtt.url,
        MEDCLOUD_MQTT__CLIENT_ID="medcloud-ingest-e2e",
        MEDCLOUD_MQTT__ADMIN_USERNAME=mqtt.admin_username,
        MEDCLOUD_MQTT__ADMIN_PASSWORD=mqtt.admin_password.get_secret_value(),
        MEDCLOUD_MQTT__RECONNECT_MAX_SECONDS="1",
    )


@pytest.mark.timeout(RUN_SECONDS * 4 + 240)
async def test_no_reading_is_lost_or_stored_twice_when_the_mqtt_worker_is_killed(
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    with running_broker(tmp_path / "mosquitto", persistence=True) as broker:
        env = environment(settings, broker)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve_log, worker_log = tmp_path / "serve.log", tmp_path / "worker.log"
        serve_env = env | {"MEDCLOUD_MQTT__SUBSCRIBE": "false"}
        with medcloud("serve", "--port", str(port), "--no-workers", env=serve_env, log=serve_log):
            await wait_ready(base, serve_log)
            registered = await register(base, DEVICES)
        device_ids = [d["id"] for d in registered]
        tallies = {device_id: Tally() for device_id in device_ids}

        async with contextlib.AsyncExitStack() as stack:
            devices = [
                await stack.enter_async_context(mqtt_device(broker, d["id"], d["token"]))
                for d in registered
            ]
            with medcloud(*WORKER, env=env, log=worker_log) as worker:
                await probe(devices[0], worker_log)
                started = time.monotonic()
                publishers = asyncio.gather(
                    *(publish_for(d, tallies[d.device_id], RUN_SECONDS) for d in devices)
                )
                await asyncio.sleep(RUN_SECONDS * 0.4)
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                killed = time.monotonic()
                killed_at = killed - started
            # Down for a while: the broker keeps what arrives for the worker's session.
            await asyncio.sleep(min(3.0, RUN_SECONDS * 0.1))
            restarted = time.monotonic()
            with medcloud(*WORKER, env=env, log=worker_log):
                await publishers
                sent = sum(len(t.sent) for t in tallies.values())

                async def all_stored() -> bool:
                    found = await stored_numbers(settings, device_ids)
                    return all(tallies[i].sent <= found[i] for i in device_ids)

                deadline = time.monotonic() + 120 + RUN_SECONDS
                while not await all_stored() and time.monotonic() < deadline:
                    await asyncio.sleep(1)
                # The acks of the last messages travel after their commit.
                await asyncio.sleep(1)

            stored = await stored_numbers(settings, device_ids)
            rows, distinct = await row_counts(settings, device_ids)
            app_acked = {
                device.device_id: {
                    int(k)
                    for k, ack in device.acks.items()
                    if k.isdigit() and ack.get("status") == "stored"
                }
                for device in devices
            }
            duplicates_acked = sum(
                1
                for device in devices
                for k, ack in device.acks.items()
                if k.isdigit() and ack.get("duplicates")
            )

    counts = {
        "run_seconds": RUN_SECONDS,
        "killed_after_seconds": round(killed_at, 1),
        # Published while no worker ran: the broker queued these for the worker's session.
        "sent_while_down": sum(
            1 for t in tallies.values() for at in t.sent_at.values() if killed <= at < restarted
        ),
        "sent": sent,
        "broker_acked": sum(len(t.broker_acked) for t in tallies.values()),
        "app_acked": sum(len(a) for a in app_acked.values()),
        "acked_as_duplicate": duplicates_acked,
        "stored": sum(len(s) for s in stored.values()),
        "rows": rows,
        "distinct_rows": distinct,
    }
    # Shown in the run's output without -s: these counts are what the test is about.
    backend = "embedded" if settings.is_sqlite else "services"
    with capsys.disabled():
        sys.stdout.write(f"\nMQTT kill test ({backend}): {counts}\n")
    record_property("counts", counts)
    for device_id in device_ids:
        lost = tallies[device_id].sent - stored[device_id]
        assert not lost, f"{len(lost)} sent readings of {device_id} were never stored: {counts}"
        unstored = app_acked[device_id] - stored[device_id]
        assert not unstored, f"acknowledged but not stored: {sorted(unstored)[:10]}"
    assert rows == distinct, counts
    assert counts["broker_acked"] == sent, counts
    assert counts["stored"] >= sent, counts
