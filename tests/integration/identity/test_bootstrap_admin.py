"""The first admin of a fresh deployment, made from settings by whichever identity process
starts first."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from medcloud.bootstrap import bootstrap, load_contexts
from medcloud.config import Settings
from medcloud.identity.models import Organisation, UserAccount
from medcloud.identity.service import ensure_bootstrap_admin
from medcloud.platform.migrate import migrate


@pytest.mark.empty_database  # fresh: no admin yet
async def test_identity_processes_starting_at_once_make_one_first_admin(
    settings: Settings,
) -> None:
    # A split deployment's identity API replicas and worker all start on the empty database;
    # each finds no user, and each tries to make the admin.
    runtime = bootstrap(settings)
    try:
        await migrate(runtime.database, [c.migrations for c in load_contexts() if c.migrations])
        await asyncio.gather(
            *(ensure_bootstrap_admin(uow_factory=runtime.uow, settings=settings) for _ in range(4))
        )
        async with runtime.read_sessions() as session:
            users = await session.scalar(select(func.count()).select_from(UserAccount))
            organisations = await session.scalar(select(func.count()).select_from(Organisation))
        assert (users, organisations) == (1, 1)
    finally:
        await runtime.cache.close()
        await runtime.database.dispose()
