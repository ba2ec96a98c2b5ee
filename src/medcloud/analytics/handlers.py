"""Events the analytics context consumes."""

from __future__ import annotations

from medcloud.analytics import service
from medcloud.analytics.rules import threshold_rules
from medcloud.config import Settings
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.bus import Subscription
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork


async def evaluate_readings(
    event: ReadingsCollected, *, uow: UnitOfWork, settings: Settings, metrics: Metrics
) -> None:
    """Run the alert rules over newly stored readings."""
    rules = threshold_rules(settings.alerts)
    await service.raise_alerts(uow=uow, rules=rules, readings=event, metrics=metrics)


SUBSCRIPTIONS = (Subscription(ReadingsCollected, evaluate_readings),)
