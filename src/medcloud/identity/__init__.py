"""Identity: organisations, users, sign-in and access tokens."""

from __future__ import annotations

from pathlib import Path

from medcloud.identity.api import router
from medcloud.identity.handlers import SUBSCRIPTIONS
from medcloud.identity.service import ensure_bootstrap_admin
from medcloud.platform.context import Context

CONTEXT = Context(
    name="identity",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    on_start=(ensure_bootstrap_admin,),
)
