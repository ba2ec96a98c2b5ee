"""Events the notifications context consumes: every change of an alarm."""

from __future__ import annotations

from collections.abc import Sequence

from medcloud.analytics.events import (
    AlertAcknowledged,
    AlertRaised,
    AlertResolved,
    AlertSilenced,
    AlertUpdated,
)
from medcloud.config import Settings
from medcloud.notifications import service
from medcloud.notifications.notifier import Notifier
from medcloud.platform.bus import Subscription
from medcloud.platform.directory import CareDirectory, PatientDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork
from medcloud.reports.events import ReportGenerated


async def start_escalation(
    events: Sequence[AlertRaised],
    *,
    uow: UnitOfWork,
    settings: Settings,
    care: CareDirectory,
    metrics: Metrics,
    notifier: Notifier,
) -> None:
    """Tell the first step's people of new alarms, and schedule the next steps."""
    await service.alarms_raised(
        uow, events, settings=settings, care=care, metrics=metrics, notifier=notifier
    )


async def acknowledged(
    event: AlertAcknowledged, *, uow: UnitOfWork, settings: Settings, notifier: Notifier
) -> None:
    """Someone has the alarm in hand: stop paging, tell those already paged."""
    await service.alarm_stopped(uow, event, settings=settings, notifier=notifier)


async def resolved(
    event: AlertResolved, *, uow: UnitOfWork, settings: Settings, notifier: Notifier
) -> None:
    """The alarm is over: stop paging."""
    await service.alarm_stopped(uow, event, settings=settings, notifier=notifier)


# One handler per event type: each is a consumer (and a queue) of its own on the bus.
async def updated(event: AlertUpdated, *, uow: UnitOfWork, notifier: Notifier) -> None:
    """Show an alarm's change of priority or condition on the live stream."""
    service.record_feed(uow, event, notifier)


async def silenced(event: AlertSilenced, *, uow: UnitOfWork, notifier: Notifier) -> None:
    """Show that an alarm was silenced on the live stream."""
    service.record_feed(uow, event, notifier)


async def report_generated(
    event: ReportGenerated,
    *,
    uow: UnitOfWork,
    settings: Settings,
    care: CareDirectory,
    patients: PatientDirectory,
    notifier: Notifier,
) -> None:
    """Email the people a new report is for where it is ready."""
    await service.report_ready(
        uow, event, settings=settings, care=care, patients=patients, notifier=notifier
    )


SUBSCRIPTIONS = (
    # Batched: a burst of alarms asks the roster its questions once (see batch.py).
    Subscription(AlertRaised, start_escalation, batched=True),
    Subscription(AlertAcknowledged, acknowledged),
    Subscription(AlertResolved, resolved),
    Subscription(AlertUpdated, updated),
    Subscription(AlertSilenced, silenced),
    Subscription(ReportGenerated, report_generated),
)
