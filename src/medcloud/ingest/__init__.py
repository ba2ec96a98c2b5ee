"""Ingest: transports, the data-quality gate, the readings store and its queries."""

from __future__ import annotations

from pathlib import Path

from medcloud.ingest.api import router
from medcloud.ingest.handlers import SUBSCRIPTIONS
from medcloud.ingest.hooks import maintain_partitions, provide_intake
from medcloud.ingest.mqtt import consume_mqtt
from medcloud.ingest.uploads import watch_uploads
from medcloud.platform.context import Context

CONTEXT = Context(
    name="ingest",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    provides=(provide_intake,),
    background=(consume_mqtt,),
    singletons=(maintain_partitions, watch_uploads),
)
