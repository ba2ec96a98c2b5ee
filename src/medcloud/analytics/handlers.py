"""Events the analytics context consumes."""

from __future__ import annotations

from collections.abc import Sequence

from medcloud.analytics import evaluation, service, technical
from medcloud.config import Settings
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved
from medcloud.ingest.events import ReadingsCollected
from medcloud.notifications.events import (
    AlarmUnrouted,
    ChannelDown,
    ChannelRestored,
    LinkAcknowledged,
)
from medcloud.platform.bus import Subscription
from medcloud.platform.directory import PatientDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork


async def evaluate_readings(
    events: Sequence[ReadingsCollected],
    *,
    uow: UnitOfWork,
    settings: Settings,
    patients: PatientDirectory,
    metrics: Metrics,
) -> None:
    """Run the alarm rules and NEWS2 over newly stored readings."""
    await evaluation.evaluate_readings(
        uow=uow, settings=settings, patients=patients, metrics=metrics, batches=events
    )


async def record_technical_alert(event: DeviceAlertRaised, *, uow: UnitOfWork) -> None:
    """Show a device's technical alert to the clinicians of its patient."""
    await technical.record_technical_alert(uow=uow, alert=event)


async def resolve_technical_alert(event: DeviceAlertResolved, *, uow: UnitOfWork) -> None:
    """Mark a technical alert resolved once the device's condition is over."""
    await technical.resolve_technical_alert(uow=uow, resolution=event)


async def raise_channel_down(event: ChannelDown, *, uow: UnitOfWork) -> None:
    """A notification channel keeps failing: a technical alarm for the organisation."""
    await technical.record_notification_alarm(
        uow=uow,
        alarm_id=event.alarm_id,
        organisation_id=event.organisation_id,
        device_id="notifications",
        patient_id=None,
        subject=f"channel:{event.organisation_id}:{event.channel}",
        kind="notification_channel_down",
        message=f"{event.channel} notifications failing: {event.reason}"[:200],
        raised_at=event.since,
    )


async def resolve_channel_down(event: ChannelRestored, *, uow: UnitOfWork) -> None:
    """The channel delivers again: its technical alarm is over."""
    await technical.resolve_notification_alarm(
        uow=uow, alarm_id=event.alarm_id, resolved_at=event.since
    )


async def raise_unrouted(event: AlarmUnrouted, *, uow: UnitOfWork) -> None:
    """An alarm found nobody on call: a technical alarm in its patient's list."""
    await technical.record_notification_alarm(
        uow=uow,
        alarm_id=event.alarm_id,
        organisation_id=event.organisation_id,
        device_id=event.device_id,
        patient_id=event.patient_id,
        # One open per patient: a second unrouted alarm of the same patient adds nothing.
        subject=f"unrouted:{event.patient_id or event.device_id}",
        kind="no_one_on_call",
        message=f"nobody on call was told of a {event.priority} priority alarm",
        raised_at=event.raised_at,
    )


async def acknowledge_by_link(event: LinkAcknowledged, *, uow: UnitOfWork) -> None:
    """Someone acknowledged an alarm with the signed link in a message."""
    await service.acknowledge_by_link(uow=uow, alert_id=event.alert_id, user_id=event.user_id)


SUBSCRIPTIONS = (
    Subscription(ReadingsCollected, evaluate_readings, batched=True),
    Subscription(DeviceAlertRaised, record_technical_alert),
    Subscription(DeviceAlertResolved, resolve_technical_alert),
    Subscription(ChannelDown, raise_channel_down),
    Subscription(ChannelRestored, resolve_channel_down),
    Subscription(AlarmUnrouted, raise_unrouted),
    Subscription(LinkAcknowledged, acknowledge_by_link),
)
