"""Events the devices context consumes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from medcloud.devices import status
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.bus import Subscription
from medcloud.platform.uow import UnitOfWork


async def mark_device_seen(events: Sequence[ReadingsCollected], *, uow: UnitOfWork) -> None:
    """Any stored reading counts as a sign of life."""
    seen: dict[str, dt.datetime] = {}
    for event in events:
        last = seen.get(event.device_id)
        if last is None or event.received_at > last:
            seen[event.device_id] = event.received_at
    await status.record_activity(uow=uow, seen=seen)


SUBSCRIPTIONS = (Subscription(ReadingsCollected, mark_device_seen, batched=True),)
