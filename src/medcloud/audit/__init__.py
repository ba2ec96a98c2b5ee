"""Audit: the append-only, hash-chained, signed log every context feeds with `AuditRecorded`."""

from __future__ import annotations

from pathlib import Path

from medcloud.audit.api import router
from medcloud.audit.handlers import SUBSCRIPTIONS
from medcloud.audit.service import ensure_signing_key
from medcloud.platform.context import Context

CONTEXT = Context(
    name="audit",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    on_start=(ensure_signing_key,),
)
