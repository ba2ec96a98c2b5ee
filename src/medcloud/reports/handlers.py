"""Events the reports context consumes: none; it reads other contexts through their published
interfaces when it makes a report, and publishes `report.generated`."""

from __future__ import annotations

from medcloud.platform.bus import Subscription

SUBSCRIPTIONS: tuple[Subscription, ...] = ()
