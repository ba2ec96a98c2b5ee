"""Use cases driven by alarm changes: start an escalation (its steps run in `steps.py`), stop
it and tell those already paged, and put every change on the live feed and the organisation's
webhooks.

Each runs inside the caller's unit of work (a consumer's, or the escalation loop's), so what it
queues is committed with the event that caused it, or not at all.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from medcloud.analytics.events import AlertChanged
from medcloud.config import Settings
from medcloud.notifications import repository
from medcloud.notifications.batch import Batch
from medcloud.notifications.models import (
    ESCALATING,
    AlarmEscalation,
    FeedEntry,
    InboxItem,
)
from medcloud.notifications.notifier import Notifier
from medcloud.notifications.outbound import (
    address_of,
    alarm_link,
    delivery_row,
    queue_webhooks,
    reachable,
)
from medcloud.notifications.steps import run_step
from medcloud.platform.directory import CareDirectory, PatientDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork
from medcloud.reports.events import ReportGenerated

log = structlog.get_logger(__name__)

OWN_ALARMS = frozenset({"no_one_on_call", "notification_channel_down"})
"""Technical alarms about notifying itself: shown and sent to webhooks, never escalated."""
FEED_FIELDS = (
    "alert_id",
    "source",
    "state",
    "priority",
    "device_id",
    "patient_id",
    "ward_id",
    "rule",
    "condition_active",
    "raised_at",
    "changed_at",
    "actor_id",
    "silenced_until",
)
"""What the live stream says of an alarm: enough to redraw a ward display, never a value."""


def _alert_json(event: AlertChanged) -> dict[str, Any]:
    data = event.model_dump(mode="json", include=set(FEED_FIELDS))
    data["type"] = event.routing_key
    return data


def record_feed(uow: UnitOfWork, event: AlertChanged, notifier: Notifier | None) -> None:
    """Put an alarm change on the live stream."""
    uow.session.add(
        FeedEntry(
            organisation_id=event.organisation_id,
            patient_id=event.patient_id,
            type=event.routing_key,
            body=orjson.dumps(_alert_json(event)).decode(),
            created_at=uow.clock.now(),
        )
    )
    if notifier is not None:
        uow.after_commit(notifier.feed_grew)


async def alarms_raised(
    uow: UnitOfWork,
    events: Sequence[AlertChanged],
    *,
    settings: Settings,
    care: CareDirectory,
    metrics: Metrics,
    notifier: Notifier | None,
) -> None:
    """Start escalating new alarms: each one's first step runs at once, in this transaction."""
    now = uow.clock.now()
    next_poll = now + dt.timedelta(seconds=settings.notifications.poll_seconds)
    soon = False
    known = await repository.escalations(uow.session, {event.alert_id for event in events})
    async with Batch(uow.session) as batch:
        for event in events:
            record_feed(uow, event, notifier)
            await queue_webhooks(
                batch,
                settings,
                now=now,
                event_type="alert.raised",
                organisation_id=event.organisation_id,
                alert_id=event.alert_id,
                alert=_alert_json(event),
            )
            if event.rule in OWN_ALARMS or event.alert_id in known:
                # Own alarms went to the fallback contact already: paging about them could loop.
                continue
            chain = await batch.chain(event.organisation_id, event.ward_id, event.priority)
            alarm = AlarmEscalation(
                alert_id=event.alert_id,
                organisation_id=event.organisation_id,
                ward_id=event.ward_id,
                patient_id=event.patient_id,
                device_id=event.device_id,
                priority=event.priority,
                condition=event.rule,
                source=event.source,
                raised_at=event.raised_at,
                steps=[step.as_json() for step in chain.steps],
                repeat_after_seconds=chain.repeat_after_seconds,
                step=0,
                round=0,
                state=ESCALATING,
                next_at=event.raised_at,
            )
            known[event.alert_id] = alarm
            uow.session.add(alarm)
            await run_step(uow, batch, alarm, settings=settings, care=care, metrics=metrics)
            soon = soon or (alarm.next_at is not None and alarm.next_at <= next_poll)
    if notifier is not None:
        uow.after_commit(notifier.deliveries_due)
        if soon:
            # Only a step due before the escalation loop's next look needs it awake sooner.
            uow.after_commit(notifier.escalations_due)


async def alarm_stopped(
    uow: UnitOfWork,
    event: AlertChanged,
    *,
    settings: Settings,
    notifier: Notifier | None,
) -> None:
    """An alarm was acknowledged or resolved: stop its escalation, and tell those paged."""
    record_feed(uow, event, notifier)
    acknowledged = event.routing_key == "alert.acknowledged"
    async with Batch(uow.session) as batch:
        await queue_webhooks(
            batch,
            settings,
            now=uow.clock.now(),
            event_type=event.routing_key,
            organisation_id=event.organisation_id,
            alert_id=event.alert_id,
            alert=_alert_json(event),
        )
        await stop(
            uow,
            event.alert_id,
            state="acknowledged" if acknowledged else "resolved",
            actor_id=event.actor_id,
        )
        if acknowledged:
            await _tell_paged(
                uow,
                batch,
                settings,
                event.alert_id,
                actor_id=event.actor_id,
                priority=event.priority,
            )
    if notifier is not None:
        uow.after_commit(notifier.deliveries_due)


async def stop(uow: UnitOfWork, alert_id: str, *, state: str, actor_id: str | None) -> bool:
    """Stop an alarm's escalation and cancel its unsent messages; tell whether it was running."""
    alarm = await uow.session.get(AlarmEscalation, alert_id)
    if alarm is None or alarm.state not in (ESCALATING, "exhausted"):
        return False
    now = uow.clock.now()
    alarm.state, alarm.next_at, alarm.stopped_at, alarm.stopped_by = state, None, now, actor_id
    await repository.cancel_pending(uow.session, alert_id, now)
    return True


async def _tell_paged(
    uow: UnitOfWork,
    batch: Batch,
    settings: Settings,
    alert_id: str,
    *,
    actor_id: str | None,
    priority: str,
) -> None:
    """Tell everyone an alarm reached that someone has it in hand, where it reached them."""
    now = uow.clock.now()
    rows, seen = [], set()
    for done in await repository.reached(uow.session, alert_id):
        if done.user_id == actor_id or (done.user_id, done.channel) in seen:
            continue
        seen.add((done.user_id, done.channel))
        rows.append(
            delivery_row(
                key=f"{alert_id}:acknowledged:{done.user_id}:{done.channel}",
                organisation_id=done.organisation_id,
                alert_id=alert_id,
                kind="acknowledged",
                user_id=done.user_id,
                channel=done.channel,
                address=done.address,
                target=done.target,
                now=now,
                locale=done.locale,
                status="delivered" if done.channel == "inapp" else "queued",
            )
        )
        if done.channel == "inapp":
            assert done.user_id is not None  # noqa: S101  (an inbox belongs to a user)
            uow.session.add(
                InboxItem(
                    id=str(uuid.uuid4()),
                    organisation_id=done.organisation_id,
                    user_id=done.user_id,
                    alert_id=alert_id,
                    kind="acknowledged",
                    priority=priority,
                    title=f"[{priority.upper()}] Alarm acknowledged",
                    link=alarm_link(settings, alert_id),
                    created_at=now,
                )
            )
    batch.queue(rows)


async def report_ready(
    uow: UnitOfWork,
    event: ReportGenerated,
    *,
    settings: Settings,
    care: CareDirectory,
    patients: PatientDirectory,
    notifier: Notifier | None,
) -> None:
    """Email a new report's people: the organisation's admins for an organisation's report, the
    ward's team for a ward's or a patient's. Whoever asked for it has it already."""
    if "email" not in reachable(settings):
        return
    ward_id = event.ward_id
    if event.scope == "patient" and event.patient_id is not None:
        patient = await patients.get(event.patient_id)
        ward_id = patient.ward_id if patient is not None else None
    if event.scope == "organisation":
        users = await care.admins(event.organisation_id)
    elif ward_id is not None:
        users = await care.ward_members(event.organisation_id, ward_id)
    else:
        users = []
    users = [user for user in users if user != event.requested_by]
    now = uow.clock.now()
    public = settings.notifications.public_url.rstrip("/")
    payload = {
        "link": f"{public}/api/v1/reports/{event.report_id}",
        "ward": ward_id[:8] if event.scope == "ward" and ward_id else None,
    }
    async with Batch(uow.session) as batch:
        contacts = await batch.recipients(users)
        rows = []
        for user_id, contact in contacts.items():
            address = address_of(contact, "email")
            if address is None:
                continue
            rows.append(
                delivery_row(
                    key=f"report:{event.report_id}:{user_id}:email",
                    organisation_id=event.organisation_id,
                    alert_id=None,
                    kind="report_ready",
                    user_id=user_id,
                    channel="email",
                    address=address,
                    target="report",
                    now=now,
                    locale=contact.locale,
                    raised_at=now,
                    payload=payload,
                )
            )
        batch.queue(rows)
    if rows and notifier is not None:
        uow.after_commit(notifier.deliveries_due)
