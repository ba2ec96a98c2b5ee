"""Analytics: alarm rules and the alarm lifecycle, NEWS2, forecasts and the anomaly model."""

from __future__ import annotations

from pathlib import Path

from medcloud.analytics.advisories import watch_advisories
from medcloud.analytics.api import router
from medcloud.analytics.handlers import SUBSCRIPTIONS
from medcloud.platform.context import Context

CONTEXT = Context(
    name="analytics",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    singletons=(watch_advisories,),
)
