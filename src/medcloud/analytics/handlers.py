"""Events the analytics context consumes."""

from __future__ import annotations

from collections.abc import Sequence

from medcloud.analytics import evaluation, service
from medcloud.config import Settings
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved
from medcloud.ingest.events import ReadingsCollected
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
    await service.record_technical_alert(uow=uow, alert=event)


async def resolve_technical_alert(event: DeviceAlertResolved, *, uow: UnitOfWork) -> None:
    """Mark a technical alert resolved once the device's condition is over."""
    await service.resolve_technical_alert(uow=uow, resolution=event)


SUBSCRIPTIONS = (
    Subscription(ReadingsCollected, evaluate_readings, batched=True),
    Subscription(DeviceAlertRaised, record_technical_alert),
    Subscription(DeviceAlertResolved, resolve_technical_alert),
)
