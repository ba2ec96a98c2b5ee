"""Events the devices context consumes."""

from __future__ import annotations

from medcloud.devices import service
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.bus import Subscription
from medcloud.platform.uow import UnitOfWork


async def mark_device_seen(event: ReadingsCollected, *, uow: UnitOfWork) -> None:
    """Any stored reading counts as a sign of life."""
    await service.record_activity(uow=uow, device_id=event.device_id, seen_at=event.received_at)


SUBSCRIPTIONS = (Subscription(ReadingsCollected, mark_device_seen),)
