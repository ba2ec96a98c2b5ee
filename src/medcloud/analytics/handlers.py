"""Events the analytics context consumes."""

from __future__ import annotations

from collections.abc import Sequence

from medcloud.analytics import service
from medcloud.analytics.rules import threshold_rules
from medcloud.config import Settings
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.bus import Subscription
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork


async def evaluate_readings(
    events: Sequence[ReadingsCollected], *, uow: UnitOfWork, settings: Settings, metrics: Metrics
) -> None:
    """Run the alert rules over newly stored readings."""
    rules = threshold_rules(settings.alerts)
    await service.raise_alerts(uow=uow, rules=rules, readings=events, metrics=metrics)


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
