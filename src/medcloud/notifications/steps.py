"""Running an alarm's escalation: each step tells whoever it names (inbox and their channels
for the priority), the next is scheduled, and an alarm nobody can be told about raises a
technical alarm and goes to the organisation's fallback contact."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import structlog

from medcloud.config import Settings
from medcloud.notifications import repository
from medcloud.notifications.batch import Batch
from medcloud.notifications.escalation import CARE_TEAM, Chain, channels_for, in_quiet_hours
from medcloud.notifications.events import AlarmUnrouted, AlertEscalated
from medcloud.notifications.models import AlarmEscalation, InboxItem
from medcloud.notifications.outbound import (
    address_of,
    alarm_link,
    delivery_row,
    queue_webhooks,
    reachable,
)
from medcloud.platform.directory import CareDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


async def escalate_due(
    uow: UnitOfWork,
    *,
    settings: Settings,
    care: CareDirectory,
    metrics: Metrics,
    limit: int = 100,
) -> int:
    """Run every escalation step that has come due; tell how many ran."""
    now = uow.clock.now()
    ran = 0
    async with Batch(uow.session) as batch:
        for alarm in await repository.due_alarms(uow.session, now, limit):
            # A chain that fell behind (the worker was down) catches up one step per pass.
            await run_step(uow, batch, alarm, settings=settings, care=care, metrics=metrics)
            ran += 1
    return ran


async def run_step(
    uow: UnitOfWork,
    batch: Batch,
    alarm: AlarmEscalation,
    *,
    settings: Settings,
    care: CareDirectory,
    metrics: Metrics,
) -> None:
    """Tell whoever the alarm's current step names, then schedule the next step."""
    now = uow.clock.now()
    chain = Chain.from_json(alarm.steps, alarm.repeat_after_seconds)
    step = chain.steps[alarm.step]
    if step.notify == CARE_TEAM:
        users = (
            []
            if alarm.ward_id is None
            else await batch.ward_members(care, alarm.organisation_id, alarm.ward_id)
        )
    else:
        users = await batch.on_call(alarm.organisation_id, alarm.ward_id, step.notify, now)
    told = await _tell(uow, batch, alarm, users, settings=settings, target=step.notify, now=now)
    if not told and alarm.step == 0 and alarm.round == 0:
        # Only where the organisation pages people: one that has set up no roster watches its
        # alarms on the ward, and a second alarm beside each of them would be noise.
        if await batch.pages_anyone(alarm.organisation_id):
            await _unrouted(uow, batch, alarm, settings=settings, now=now)
    uow.publish(
        AlertEscalated(
            organisation_id=alarm.organisation_id,
            alert_id=alarm.alert_id,
            patient_id=alarm.patient_id,
            ward_id=alarm.ward_id,
            priority=alarm.priority,
            step=alarm.step,
            round=alarm.round,
            target=step.notify,
            recipients=told,
        )
    )
    if alarm.step > 0 or alarm.round > 0:
        metrics.notification_escalations.labels(priority=alarm.priority).inc()
        await queue_webhooks(
            batch,
            settings,
            now=now,
            event_type="alert.escalated",
            organisation_id=alarm.organisation_id,
            alert_id=alarm.alert_id,
            alert={
                "alert_id": alarm.alert_id,
                "priority": alarm.priority,
                "ward_id": alarm.ward_id,
                "patient_id": alarm.patient_id,
                "rule": alarm.condition,
                "step": alarm.step,
                "round": alarm.round,
                "target": step.notify,
            },
            suffix=f":{alarm.round}:{alarm.step}",
        )
    following = chain.after(alarm.step, alarm.round)
    if following is None:
        alarm.state, alarm.next_at = "exhausted", None
    else:
        alarm.step, alarm.round = following
        alarm.next_at = chain.due_at(alarm.raised_at, *following)


async def _tell(
    uow: UnitOfWork,
    batch: Batch,
    alarm: AlarmEscalation,
    users: list[str],
    *,
    settings: Settings,
    target: str,
    now: dt.datetime,
) -> int:
    """Queue the step's messages: the inbox of each user, and their channels for the priority."""
    if not users:
        return 0
    contacts = await batch.recipients(users)
    available = reachable(settings)
    rows = []
    link = alarm_link(settings, alarm.alert_id)
    for user_id in users:
        base = f"{alarm.alert_id}:{alarm.round}:{alarm.step}:{user_id}"
        uow.session.add(
            InboxItem(
                id=str(uuid.uuid4()),
                organisation_id=alarm.organisation_id,
                user_id=user_id,
                alert_id=alarm.alert_id,
                patient_id=alarm.patient_id,
                kind="alarm",
                priority=alarm.priority,
                title=_title(alarm.priority, alarm.ward_id, alarm.step),
                link=link,
                created_at=now,
            )
        )
        rows.append(
            delivery_row(
                key=f"{base}:inapp",
                organisation_id=alarm.organisation_id,
                alert_id=alarm.alert_id,
                kind="alarm",
                user_id=user_id,
                channel="inapp",
                address=user_id,
                target=target,
                now=now,
                step=alarm.step,
                round_=alarm.round,
                raised_at=alarm.raised_at,
                status="delivered",
            )
        )
        contact = contacts.get(user_id)
        if contact is None:
            continue
        quiet = in_quiet_hours(contact.quiet_start, contact.quiet_end, contact.time_zone, now)
        with_address = [c for c in available if address_of(contact, c)]
        order = channels_for(alarm.priority, contact.channels, quiet=quiet, reachable=with_address)
        if not order:
            continue
        address = address_of(contact, order[0])
        assert address is not None  # noqa: S101  (filtered on just above)
        rows.append(
            delivery_row(
                key=f"{base}:{order[0]}",
                organisation_id=alarm.organisation_id,
                alert_id=alarm.alert_id,
                kind="alarm",
                user_id=user_id,
                channel=order[0],
                address=address,
                target=target,
                now=now,
                fallbacks=order[1:],
                locale=contact.locale,
                step=alarm.step,
                round_=alarm.round,
                raised_at=alarm.raised_at,
            )
        )
    batch.queue(rows)
    return len(users)


def _title(priority: str, ward_id: str | None, step: int) -> str:
    where = f" – ward {ward_id[:8]}" if ward_id else ""
    again = f" (escalation {step})" if step else ""
    return f"[{priority.upper()}] Alarm{where}{again}"


async def _unrouted(
    uow: UnitOfWork, batch: Batch, alarm: AlarmEscalation, *, settings: Settings, now: dt.datetime
) -> None:
    """Nobody is on call for this alarm: raise a technical alarm, tell the fallback contact."""
    technical_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"medcloud:unrouted:{alarm.alert_id}"))
    uow.publish(
        AlarmUnrouted(
            organisation_id=alarm.organisation_id,
            alarm_id=technical_id,
            alert_id=alarm.alert_id,
            device_id=alarm.device_id,
            patient_id=alarm.patient_id,
            ward_id=alarm.ward_id,
            priority=alarm.priority,
            raised_at=now,
        )
    )
    log.warning("notification.unrouted", alert_id=alarm.alert_id, ward_id=alarm.ward_id)
    await tell_fallback(
        batch,
        settings,
        now=now,
        organisation_id=alarm.organisation_id,
        alert_id=alarm.alert_id,
        kind="no_one_on_call",
        key=f"{alarm.alert_id}:fallback",
        raised_at=alarm.raised_at,
    )


async def tell_fallback(
    batch: Batch,
    settings: Settings,
    *,
    now: dt.datetime,
    organisation_id: str,
    alert_id: str | None,
    kind: str,
    key: str,
    raised_at: dt.datetime | None = None,
    avoid: str | None = None,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Queue a message to the organisation's fallback contact; tell whether it has one."""
    contact = await batch.organisation(organisation_id)
    if contact is None:
        return False
    order: list[str] = [
        channel
        for channel in ("sms", "email")
        if channel in reachable(settings) and channel != avoid and address_of(contact, channel)
    ]
    if not order:
        return False
    address = address_of(contact, order[0])
    assert address is not None  # noqa: S101  (filtered on just above)
    batch.queue(
        [
            delivery_row(
                key=f"{key}:{order[0]}",
                organisation_id=organisation_id,
                alert_id=alert_id,
                kind=kind,
                user_id=None,
                channel=order[0],
                address=address,
                target="fallback",
                now=now,
                fallbacks=order[1:],
                locale=contact.locale,
                raised_at=raised_at,
                payload=payload,
            )
        ],
    )
    return True
