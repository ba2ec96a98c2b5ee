"""devices_0002 moves each device's token into a credential, and back on downgrade."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from medcloud.bootstrap import load_contexts
from medcloud.config import Settings
from medcloud.platform.db import Database, UTCDateTime, create_database
from medcloud.platform.migrate import alembic_config, migrate
from medcloud.platform.security import Role, UserPrincipal, hash_device_token, new_device_token
from tests.integration.devices.conftest import ST_MARY, authenticates
from tests.support.client import Api, bearer, running

# The device table as devices_0001 left it.
old_device = sa.table(
    "device",
    sa.column("id", sa.String(36)),
    sa.column("organisation_id", sa.String(36)),
    sa.column("serial_number", sa.String(100)),
    sa.column("model", sa.String(100)),
    sa.column("manufacturer", sa.String(100)),
    sa.column("patient_id", sa.String(64)),
    sa.column("token_hash", sa.String(64)),
    sa.column("created_at", UTCDateTime()),
    sa.column("last_seen_at", UTCDateTime()),
)


def locations() -> list[Any]:
    return [context.migrations for context in load_contexts() if context.migrations]


async def run(database: Database, step: Callable[[Config, str], None], target: str) -> None:
    config = alembic_config(locations())

    def apply(connection: Connection) -> None:
        config.attributes["connection"] = connection
        step(config, target)

    async with database.writer.begin() as connection:
        await connection.run_sync(apply)


def admin_token(api: Api) -> str:
    token: str = api.app.state.runtime.tokens.issue(UserPrincipal("u-alice", ST_MARY, Role.ADMIN))
    return token


@pytest.mark.empty_database  # migrates up from devices_0001 itself
async def test_a_device_registered_before_credentials_existed_still_authenticates(
    settings: Settings,
) -> None:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    database = create_database(settings.resolved_database_url)
    token = new_device_token()
    created_at = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)
    device_id = str(uuid.uuid4())
    try:
        await run(database, command.upgrade, "devices_0001")
        async with database.writer.begin() as connection:
            await connection.execute(
                sa.insert(old_device).values(
                    id=device_id,
                    organisation_id=ST_MARY,
                    serial_number="LEGACY-1",
                    model="PulseOx 1",
                    manufacturer="Acme Medical",
                    patient_id="patient-1",
                    token_hash=hash_device_token(token),
                    created_at=created_at,
                    last_seen_at=None,
                )
            )
        await migrate(database, locations())
    finally:
        await database.dispose()

    async with running(settings) as api:
        device = {"id": device_id}
        assert await authenticates(api, device, token)
        assert not await authenticates(api, device, new_device_token())
        response = await api.http.get(
            f"/api/v1/devices/{device_id}/credentials", headers=bearer(admin_token(api))
        )
        [credential] = response.json()["items"]
        assert dt.datetime.fromisoformat(credential["created_at"]) == created_at
        assert credential["expires_at"] is None and credential["revoked_at"] is None


async def test_a_downgrade_keeps_the_newest_working_token_and_no_revoked_one(
    settings: Settings,
) -> None:
    async with running(settings) as api:
        alice = admin_token(api)
        rotated = await api.register_device(alice, serial="ROTATED")
        response = await api.http.post(
            f"/api/v1/devices/{rotated['id']}/credentials/rotate",
            json={"grace_seconds": 3600},
            headers=bearer(alice),
        )
        newest = response.json()["token"]
        revoked = await api.register_device(alice, serial="REVOKED")
        await api.http.post(
            f"/api/v1/devices/{revoked['id']}/credentials/revoke", headers=bearer(alice)
        )

    database = create_database(settings.resolved_database_url)
    try:
        await run(database, command.downgrade, "devices_0001")
        async with database.reader.connect() as connection:
            rows = await connection.execute(sa.select(old_device.c.id, old_device.c.token_hash))
            hashes = dict(rows.all())
        assert hashes[rotated["id"]] == hash_device_token(newest)
        assert hashes[revoked["id"]] != hash_device_token(revoked["token"])
        await migrate(database, locations())
    finally:
        await database.dispose()

    async with running(settings) as api:
        assert await authenticates(api, rotated, newest)
        assert not await authenticates(api, rotated, rotated["token"])
        assert not await authenticates(api, revoked, revoked["token"])
