"""Analytics: alert rules evaluated on the stream of stored readings."""

from __future__ import annotations

from pathlib import Path

from medcloud.analytics.api import router
from medcloud.analytics.handlers import SUBSCRIPTIONS
from medcloud.platform.context import Context

CONTEXT = Context(
    name="analytics",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
)
