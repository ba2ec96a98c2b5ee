"""Every alarm is mailed, across a worker killed with SIGKILL in the middle of sending.

The test's own app answers requests only; a `medcloud worker` process raises the alarms and
sends the emails to a real SMTP server in this process. It is killed while mails go out and
started again: afterwards every alarm has been mailed, none is lost, and a mail is sent twice
only if the worker died between the server accepting it and the worker recording that — as
SMTP has no idempotency key, a repeat carries the same Message-ID for the mail system to drop.
"""

from __future__ import annotations

import datetime as dt
import signal
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from medcloud.analytics.models import Alert
from medcloud.config import NotificationSettings, Settings
from medcloud.notifications.mailbox import LocalMailbox
from medcloud.notifications.models import Delivery
from tests.support.client import Api, bearer, eventually, now, reading, running
from tests.support.processes import medcloud, settings_env

ADMIN = ("alice.admin@stmary.example", "alice-admin-passphrase")
ALARMS = 60
SENDERS = 4


async def scalar(api: Api, query: object) -> int:
    async with api.app.state.runtime.read_sessions() as session:
        return int(await session.scalar(query) or 0)


async def put_admin_on_call(api: Api, token: str) -> None:
    me = (await api.http.get("/api/v1/users/me", headers=bearer(token))).json()["id"]
    recipient = await api.http.put(
        f"/api/v1/notifications/recipients/{me}",
        json={"email": "on-call@stmary.example", "channels": {"high": ["email"]}},
        headers=bearer(token),
    )
    assert recipient.status_code == 200, recipient.text
    start = now() - dt.timedelta(minutes=1)
    shift = await api.http.post(
        "/api/v1/on-call",
        json={
            "user_id": me,
            "duty": "primary",
            "starts_at": start.isoformat(),
            "ends_at": (start + dt.timedelta(hours=2)).isoformat(),
        },
        headers=bearer(token),
    )
    assert shift.status_code == 201, shift.text


async def test_every_alarm_is_mailed_across_a_killed_worker(
    settings: Settings, tmp_path: Path
) -> None:
    mailbox = LocalMailbox()
    await mailbox.start()
    # Slow enough that the kill lands while mails are in flight; claims expire in 2 s.
    config = NotificationSettings(
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        senders=SENDERS,
        claim_seconds=2.0,
        poll_seconds=0.2,
    )
    settings = settings.model_copy(
        update={
            "notifications": config,
            "alerts": settings.alerts.model_copy(update={"freshness_seconds": 3600.0}),
        }
    )
    env = settings_env(
        settings,
        MEDCLOUD_ALERTS__FRESHNESS_SECONDS="3600",
        MEDCLOUD_NOTIFICATIONS__SMTP_HOST="127.0.0.1",
        MEDCLOUD_NOTIFICATIONS__SMTP_PORT=str(mailbox.port),
        MEDCLOUD_NOTIFICATIONS__SENDERS=str(SENDERS),
        MEDCLOUD_NOTIFICATIONS__CLAIM_SECONDS="2",
        MEDCLOUD_NOTIFICATIONS__POLL_SECONDS="0.2",
    )
    log = tmp_path / "worker.log"
    clinical = select(func.count()).select_from(Alert).where(Alert.source == "clinical")
    try:
        async with running(settings, workers=False) as api:
            token = await api.token(*ADMIN)
            await put_admin_on_call(api, token)
            for i in range(ALARMS):
                patient = await api.create_patient(token, f"MRN-{i:04d}")
                device = await api.register_device(token, f"PO-{i:04d}", patient)
                sent = await api.send(device, reading(heart_rate=160))
                assert sent.status_code == 201, sent.text

            with medcloud("worker", env=env, log=log) as worker:

                async def some_sent() -> bool:
                    return len(mailbox.messages) >= ALARMS // 4

                assert await eventually(some_sent, timeout=60), log.read_text()[-3000:]
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
            at_kill = len(mailbox.messages)
            assert at_kill < ALARMS, "the kill came too late to interrupt anything"

            with medcloud("worker", env=env, log=log):

                async def all_mailed() -> bool:
                    keys = {r.idempotency_key for r in mailbox.messages}
                    return len(keys) >= ALARMS

                assert await eventually(all_mailed, timeout=90), log.read_text()[-3000:]
                unfinished = (
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.status.not_in(("sent", "delivered")))
                )

                async def all_recorded() -> bool:
                    return await scalar(api, unfinished) == 0

                assert await eventually(all_recorded, timeout=30)

            assert await scalar(api, clinical) == ALARMS
            listed = await api.http.get(
                "/api/v1/alerts",
                params={"source": "clinical", "limit": 1000},
                headers=bearer(token),
            )
            alarms = {alarm["id"] for alarm in listed.json()["items"]}
    finally:
        await mailbox.stop()
    mailed = Counter((r.idempotency_key or "").split(":", 1)[0] for r in mailbox.messages)
    assert set(mailed) == alarms
    # A repeat is possible only for mails in flight at the kill, and keeps its Message-ID.
    repeats = Counter(r.message_id for r in mailbox.messages)
    duplicates = sum(n - 1 for n in repeats.values())
    assert duplicates <= SENDERS
    assert len(repeats) == ALARMS
