"""Events the ingest context consumes: none yet."""

from __future__ import annotations

from medcloud.platform.bus import Subscription

SUBSCRIPTIONS: tuple[Subscription, ...] = ()
