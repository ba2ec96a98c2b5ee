"""At-least-once delivery, exactly once in effect, across a worker killed with SIGKILL.

The test's own app stores readings without relaying them (as a server whose worker is down);
a separate `medcloud worker` process relays and consumes. Killing it mid-stream and starting it
again must deliver every committed event, and no alert may be raised twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path

from sqlalchemy import func, select

from medcloud.analytics.models import Alert
from medcloud.config import Settings
from medcloud.platform.models import OutboxMessage, ProcessedEvent
from tests.support.client import Api, eventually, now, reading, running
from tests.support.processes import medcloud, settings_env

ADMIN = ("alice.admin@stmary.example", "alice-admin-passphrase")


async def count(api: Api, query: object) -> int:
    async with api.app.state.runtime.read_sessions() as session:
        return int(await session.scalar(query) or 0)


async def send_batches(api: Api, device: dict[str, object], first: int, batches: int) -> int:
    """Send `batches` batches, each a tachycardic episode that ends (so each raises one alarm,
    resolved within the batch); return how many alarms they must raise."""
    base = now() - dt.timedelta(minutes=10)
    for b in range(first, first + batches):
        batch = [
            reading(base + dt.timedelta(seconds=b + i * 0.1), heart_rate=130 + i) for i in range(9)
        ]
        batch.append(reading(base + dt.timedelta(seconds=b + 0.9), heart_rate=70))
        response = await api.send(device, {"readings": batch})
        assert response.status_code == 201, response.text
    return batches


async def test_committed_events_survive_a_killed_worker_and_apply_once(
    settings: Settings, tmp_path: Path
) -> None:
    # The readings are minutes old by the time the worker gets to them: still live for alarms.
    settings = settings.model_copy(
        update={
            "bus": settings.bus.model_copy(update={"relay_claim_seconds": 1.0}),
            "alerts": settings.alerts.model_copy(update={"freshness_seconds": 3600.0}),
        }
    )
    env = settings_env(
        settings,
        MEDCLOUD_BUS__RELAY_CLAIM_SECONDS="1.0",
        MEDCLOUD_ALERTS__FRESHNESS_SECONDS="3600",
    )
    log = tmp_path / "worker.log"
    alerts = select(func.count()).select_from(Alert)
    async with running(settings, workers=False) as api:
        token = await api.token(*ADMIN)
        device = await api.register_device(token)

        # 1. Committed while no worker runs: stored, in the outbox, not yet published.
        expected = await send_batches(api, device, 0, 100)
        assert await count(api, alerts) == 0
        pending = (
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
        )
        assert await count(api, pending) >= 100

        # 2. A worker starts relaying and is killed in the middle of it.
        with medcloud("worker", env=env, log=log) as worker:
            assert await eventually(lambda: count(api, alerts), timeout=60) > 0
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        partial = await count(api, alerts)

        # 3. More readings arrive while it is down.
        expected += await send_batches(api, device, 100, 50)

        # 4. Restarted, it delivers everything; nothing is applied twice.
        with medcloud("worker", env=env, log=log):

            async def all_delivered() -> bool:
                return await count(api, alerts) >= expected and await count(api, pending) == 0

            assert await eventually(all_delivered, timeout=90), log.read_text()[-3000:]
            await asyncio.sleep(2 * settings.bus.relay_poll_seconds + 1.5)

        assert partial <= expected
        assert await count(api, alerts) == expected
        distinct = select(func.count(func.distinct(Alert.reading_timestamp)))
        assert await count(api, distinct) == expected
        processed = (
            select(func.count())
            .select_from(ProcessedEvent)
            .where(ProcessedEvent.consumer == "analytics.evaluate_readings")
        )
        assert await count(api, processed) == 150
