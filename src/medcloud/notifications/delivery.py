"""The delivery loop: claim due messages from the database, send them, record what happened.

Work lives in `notify_delivery`, never only in memory: a message is claimed for a while
(`claimed_until`), sent, and its outcome recorded; a worker killed in between leaves the claim
to expire and another worker (or itself, restarted) sends it again — under the same idempotency
key, which providers that take one use to drop the repeat, and which email carries as its
Message-ID. Failures retry with backoff and jitter, then fall back to the recipient's next
channel; a channel that keeps failing opens its circuit and raises a technical alarm.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from medcloud.config import Settings
from medcloud.notifications import outbound, repository
from medcloud.notifications.breaker import CIRCUIT_OPEN, breaker_key, count_failure, probe
from medcloud.notifications.channels import (
    Channel,
    EmailChannel,
    Message,
    Outcome,
    SmsChannel,
    WebhookChannel,
)
from medcloud.notifications.escalation import retry_delay
from medcloud.notifications.events import (
    ChannelRestored,
    NotificationDelivered,
    NotificationFailed,
)
from medcloud.notifications.messages import render
from medcloud.notifications.models import (
    ESCALATING,
    AlarmEscalation,
    Breaker,
    Delivery,
    OrganisationSettings,
    Recipient,
    Webhook,
)
from medcloud.notifications.notifier import Notifier
from medcloud.notifications.signing import sign_link
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The channels this deployment has providers for, by name."""
    config = settings.notifications
    channels: dict[str, Channel] = {"webhook": WebhookChannel()}
    if config.smtp_host or config.demo_mailbox_port:
        password = config.smtp_password
        # Without a server of its own the demo mails its local mailbox (see `loops.py`).
        channels["email"] = EmailChannel(
            config.smtp_host or "127.0.0.1",
            config.smtp_port if config.smtp_host else config.demo_mailbox_port,
            security=config.smtp_security if config.smtp_host else "plain",
            username=config.smtp_username or None,
            password=None if password is None else password.get_secret_value(),
            sender=config.mail_from,
            connections=config.smtp_connections,
        )
    if config.sms_base_url:
        token = config.sms_auth_token
        channels["sms"] = SmsChannel(
            config.sms_base_url,
            config.sms_account_sid,
            "" if token is None else token.get_secret_value(),
            config.sms_from,
            status_callback=f"{config.public_url.rstrip('/')}/api/v1/notifications/sms/status",
        )
    return channels


@dataclass(frozen=True)
class Claim:
    """A claimed delivery and what its message is built from (its alarm, its webhook)."""

    row: Delivery
    alarm: AlarmEscalation | None
    hook: Webhook | None
    breaker_key: str
    refusal: str | None = None
    """Set: not sent at all (the circuit is open)."""


@dataclass(frozen=True)
class Job:
    """A claimed delivery, the message to send, and what to record afterwards."""

    delivery_id: str
    channel: str
    breaker_key: str
    message: Message | None
    """None: not sent at all (the circuit is open, or the channel is not configured)."""
    refusal: str | None = None


@dataclass(frozen=True)
class Result:
    """What a channel answered for one job."""

    job: Job
    outcome: Outcome


async def deliver_loop(
    *,
    uow_factory: UnitOfWorkFactory,
    settings: Settings,
    metrics: Metrics,
    stop: asyncio.Event,
    notifier: Notifier,
) -> None:
    """Send due messages until `stop`; at most `senders` are in flight at once."""
    channels = build_channels(settings)
    config = settings.notifications
    in_flight: set[asyncio.Task[None]] = set()
    results: list[Result] = []

    async def send(job: Job) -> None:
        try:
            outcome = await _send(channels, job)
        finally:
            notifier.deliveries_due()
        results.append(Result(job, outcome))

    try:
        while not stop.is_set():
            batch = list(results)
            # Sent but not yet recorded counts as in flight: at most `senders` messages are ever
            # unrecorded, so at most that many go out twice if this worker is killed.
            capacity = config.senders - len(in_flight)
            jobs: list[Job] = []
            if batch or capacity > 0:
                # One transaction records what was sent and claims what is due next: the loop
                # keeps the write connection for one short transaction per turn, not two.
                async with uow_factory() as uow:
                    if batch:
                        await record(uow, batch, settings=settings, metrics=metrics)
                    claims = await claim(uow, capacity, settings=settings) if capacity > 0 else []
                    await uow.commit()
                del results[: len(batch)]
                # Built once the claim has committed: rendering holds no database connection.
                jobs = [
                    prepare(c, settings=settings, link_key=notifier.link_key, now=uow.clock.now())
                    for c in claims
                ]
            for job in jobs:
                task = asyncio.create_task(send(job), name=f"deliver-{job.delivery_id}")
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if not jobs and not results:
                await notifier.wait_deliveries(config.poll_seconds, stop)
    finally:
        # Unrecorded sends stay claimed: their claim expires and they are sent again, which the
        # idempotency key makes safe where the provider honours it.
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        for channel in channels.values():
            await channel.close()


async def _send(channels: dict[str, Channel], job: Job) -> Outcome:
    if job.message is None:
        return Outcome(status="failed", reason=job.refusal, retryable=False)
    channel = channels.get(job.channel)
    if channel is None:
        return Outcome(status="failed", reason="channel not configured", retryable=False)
    try:
        return await channel.send(job.message)
    except Exception as exc:  # noqa: BLE001  (a channel bug must not lose the message)
        log.error("notification.channel_error", channel=job.channel, error=type(exc).__name__)
        return Outcome(status="failed", reason=f"channel error: {type(exc).__name__}")


async def claim(uow: UnitOfWork, limit: int, *, settings: Settings) -> list[Claim]:
    """Claim up to `limit` due deliveries, with what their messages are built from."""
    now = uow.clock.now()
    config = settings.notifications
    rows = await repository.due_deliveries(uow.session, now, limit)
    if not rows:
        return []
    alarms = await repository.escalations(uow.session, {r.alert_id for r in rows if r.alert_id})
    breakers = await repository.open_breakers(uow.session, {breaker_key(r) for r in rows})
    hooks = {
        hook.id: hook
        for org in {r.organisation_id for r in rows if r.channel == "webhook"}
        for hook in await repository.webhooks(uow.session, org)
    }
    jobs = []
    for row in rows:
        alarm = alarms.get(row.alert_id) if row.alert_id else None
        if row.kind == "alarm" and (alarm is None or alarm.state not in (ESCALATING, "exhausted")):
            row.status, row.reason, row.updated_at = "cancelled", "alarm no longer escalating", now
            continue
        if row.channel == "webhook" and row.target not in hooks:
            row.status, row.reason, row.updated_at = "cancelled", "webhook removed", now
            continue
        key = breaker_key(row)
        circuit = breakers.get(key)
        refusal = None
        if circuit is not None and not probe(circuit, now, config.breaker_reset_seconds):
            if not row.fallbacks:
                # Nowhere else to send it: it waits for the circuit's next probe rather than
                # being given up (the technical alarm already says the channel is down).
                rested = (circuit.opened_at or now) + dt.timedelta(
                    seconds=config.breaker_reset_seconds
                )
                row.next_attempt_at, row.updated_at = max(rested, now), now
                continue
            refusal = CIRCUIT_OPEN
        row.status, row.claimed_until = "sending", now + dt.timedelta(seconds=config.claim_seconds)
        row.attempts, row.updated_at = row.attempts + 1, now
        jobs.append(Claim(row, alarm, hooks.get(row.target), key, refusal))
    return jobs


def prepare(claimed: Claim, *, settings: Settings, link_key: bytes, now: dt.datetime) -> Job:
    """The job of a claimed delivery: its message, unless it is refused."""
    row = claimed.row
    if claimed.refusal is not None:
        return Job(row.id, row.channel, claimed.breaker_key, None, refusal=claimed.refusal)
    message = _message(
        row, claimed.alarm, claimed.hook, settings=settings, link_key=link_key, now=now
    )
    return Job(row.id, row.channel, claimed.breaker_key, message)


def _message(
    row: Delivery,
    alarm: AlarmEscalation | None,
    hook: Webhook | None,
    *,
    settings: Settings,
    link_key: bytes,
    now: dt.datetime,
) -> Message:
    if hook is not None:
        return Message(
            idempotency_key=row.idempotency_key,
            to=row.address,
            subject="",
            text="",
            payload=row.payload,
            secret=hook.secret,
        )
    ack_link = None
    if row.kind == "alarm" and row.user_id and row.alert_id and row.channel == "email":
        ack_link = acknowledge_link(settings, link_key, row.alert_id, row.user_id, now=now)
    rendered = render(
        row.kind,
        row.locale,
        {
            "priority": alarm.priority if alarm else "high",
            "ward": alarm.ward_id[:8]
            if alarm and alarm.ward_id
            else (row.payload or {}).get("ward"),
            "bed": alarm.device_id[:8] if alarm else None,
            "condition": alarm.condition if alarm else None,
            "step": row.step,
            # A message about no alarm (a report) carries its own link and label.
            "link": outbound.alarm_link(settings, row.alert_id)
            if row.alert_id
            else (row.payload or {}).get("link", ""),
            "ack_link": ack_link,
            "actor": None,
            "channel": (row.payload or {}).get("channel"),
            "raised_at": row.raised_at or row.created_at,
        },
    )
    sms = row.channel == "sms"
    return Message(
        idempotency_key=row.idempotency_key,
        to=row.address,
        subject=rendered.subject,
        text=rendered.sms if sms else rendered.text,
        html=None if sms else rendered.html,
    )


def acknowledge_link(
    settings: Settings, key: bytes, alert_id: str, user_id: str, *, now: dt.datetime
) -> str:
    """A signed, expiring link that acknowledges the alarm as `user_id`, once."""
    config = settings.notifications
    expires = int(now.timestamp()) + config.link_minutes * 60
    token = sign_link(
        key, alert_id=alert_id, user_id=user_id, expires_at=expires, nonce=secrets.token_hex(16)
    )
    return f"{config.public_url.rstrip('/')}/api/v1/notifications/acknowledge?token={token}"


async def record(
    uow: UnitOfWork, results: Sequence[Result], *, settings: Settings, metrics: Metrics
) -> None:
    """Record what each channel answered: done, retry later, or failed (and fall back)."""
    now = uow.clock.now()
    rows = await repository.deliveries(uow.session, [r.job.delivery_id for r in results])
    circuits = await repository.breakers(uow.session, {r.job.breaker_key for r in results})
    for result in results:
        row = rows.get(result.job.delivery_id)
        if row is None or row.status != "sending":
            continue  # its claim expired and another worker took it over
        outcome = result.outcome
        row.claimed_until, row.updated_at = None, now
        if outcome.status in ("sent", "delivered"):
            _succeeded(uow, row, outcome, circuits.get(result.job.breaker_key), metrics, now)
        else:
            await _failed(
                uow, row, outcome, result.job, circuits, settings=settings, metrics=metrics
            )


def _succeeded(
    uow: UnitOfWork,
    row: Delivery,
    outcome: Outcome,
    circuit: Breaker | None,
    metrics: Metrics,
    now: dt.datetime,
) -> None:
    row.status, row.provider_id, row.reason, row.sent_at = (
        outcome.status,
        outcome.provider_id,
        None,
        now,
    )
    if outcome.status == "delivered":
        row.delivered_at = now
    metrics.notifications_sent.labels(channel=row.channel, outcome=outcome.status).inc()
    if row.kind == "alarm" and row.raised_at is not None:
        metrics.notification_delivery.labels(channel=row.channel).observe(
            max((now - row.raised_at).total_seconds(), 0.0)
        )
    uow.publish(
        NotificationDelivered(
            organisation_id=row.organisation_id,
            delivery_id=row.id,
            alert_id=row.alert_id,
            kind=row.kind,
            channel=row.channel,
            user_id=row.user_id,
            status=outcome.status,
        )
    )
    if circuit is None or (circuit.failures == 0 and circuit.state == "closed"):
        return
    if circuit.state != "closed" and circuit.alarm_id is not None:
        uow.publish(
            ChannelRestored(
                organisation_id=row.organisation_id,
                alarm_id=circuit.alarm_id,
                channel=circuit.channel,
                since=now,
            )
        )
        log.info("notification.channel_restored", channel=circuit.channel)
    circuit.state, circuit.failures, circuit.opened_at, circuit.updated_at = "closed", 0, None, now


async def _failed(
    uow: UnitOfWork,
    row: Delivery,
    outcome: Outcome,
    job: Job,
    circuits: dict[str, Breaker],
    *,
    settings: Settings,
    metrics: Metrics,
) -> None:
    config = settings.notifications
    now = uow.clock.now()
    row.reason = (outcome.reason or "failed")[:500]
    if job.refusal is None:
        await count_failure(uow, row, job.breaker_key, circuits, settings=settings, now=now)
    if outcome.retryable and row.attempts < config.max_attempts:
        delay = retry_delay(
            row.attempts,
            base_seconds=config.retry_base_seconds,
            max_seconds=config.retry_max_seconds,
        )
        row.status, row.next_attempt_at = "queued", now + dt.timedelta(seconds=delay)
        metrics.notifications_sent.labels(channel=row.channel, outcome="retry").inc()
        return
    row.status = "failed"
    metrics.notifications_sent.labels(channel=row.channel, outcome="failed").inc()
    fallback = await _fall_back(uow, row, settings=settings, now=now)
    uow.publish(
        NotificationFailed(
            organisation_id=row.organisation_id,
            delivery_id=row.id,
            alert_id=row.alert_id,
            kind=row.kind,
            channel=row.channel,
            user_id=row.user_id,
            reason=row.reason,
            fallback=fallback,
        )
    )
    log.warning("notification.failed", channel=row.channel, fallback=fallback, kind=row.kind)


async def _fall_back(
    uow: UnitOfWork, row: Delivery, *, settings: Settings, now: dt.datetime
) -> str | None:
    """Queue the same message on the next channel that has an address; name it."""
    available = outbound.reachable(settings)
    remaining = list(row.fallbacks)
    contact: Recipient | OrganisationSettings | None
    if row.user_id is not None:
        contact = (await repository.recipients(uow.session, [row.user_id])).get(row.user_id)
    else:
        contact = await repository.organisation(uow.session, row.organisation_id)
    while remaining and contact is not None:
        channel = remaining.pop(0)
        address = outbound.address_of(contact, channel)
        if channel not in available or not address:
            continue
        await repository.add_deliveries(
            uow.session,
            [
                {
                    **_copy(row),
                    "id": str(uuid.uuid4()),
                    "idempotency_key": f"{row.idempotency_key}>{channel}",
                    "channel": channel,
                    "address": address,
                    "fallbacks": remaining,
                    "status": "queued",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        return channel
    return None


def _copy(row: Delivery) -> dict[str, object]:
    return {
        "organisation_id": row.organisation_id,
        "alert_id": row.alert_id,
        "kind": row.kind,
        "user_id": row.user_id,
        "target": row.target,
        "locale": row.locale,
        "payload": row.payload,
        "step": row.step,
        "round": row.round,
        "raised_at": row.raised_at,
        "claimed_until": None,
        "provider_id": None,
        "reason": None,
        "sent_at": None,
        "delivered_at": None,
    }
