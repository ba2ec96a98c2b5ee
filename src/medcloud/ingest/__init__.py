"""Ingest: transports, the data-quality gate, the readings store and its queries."""

from __future__ import annotations

from pathlib import Path

from medcloud.ingest.api import router
from medcloud.ingest.handlers import SUBSCRIPTIONS
from medcloud.platform.context import Context

CONTEXT = Context(
    name="ingest",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
)
