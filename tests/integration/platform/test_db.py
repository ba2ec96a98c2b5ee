"""Pooled PostgreSQL connections: checked before use only after sitting idle."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from medcloud.config import Settings
from medcloud.platform import db
from tests.support import services

pytestmark = [pytest.mark.services, pytest.mark.parametrize("backend", ["services"])]


async def _backend_pid(database: db.Database) -> int:
    async with database.writer.connect() as connection:
        pid: int = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


async def test_an_idle_connection_cut_by_the_server_is_replaced_before_use(
    settings: Settings, service_urls: services.ServiceUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = db.create_database(settings.database_url, pool_size=1)
    try:
        first = await _backend_pid(database)
        # In steady use the same connection is handed out again without a check.
        assert await _backend_pid(database) == first

        admin = await asyncpg.connect(service_urls.postgres)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        # It has now sat idle longer than the window: checked, found gone, replaced.
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
        replaced = await _backend_pid(database)
        assert replaced != first
    finally:
        await database.dispose()
