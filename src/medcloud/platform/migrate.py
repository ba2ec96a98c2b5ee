"""Apply every context's migrations: one Alembic environment, one version branch per context."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from medcloud.platform.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x6D6564636C6F7564  # an arbitrary constant naming medcloud's migration lock


def alembic_config(version_locations: Iterable[Path]) -> Config:
    """Build the Alembic configuration for the given version directories."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        ":".join(str(path) for path in [MIGRATIONS / "versions", *version_locations]),
    )
    return config


async def migrate(database: Database, version_locations: Iterable[Path]) -> None:
    """Upgrade every branch to its head; concurrent callers on PostgreSQL take turns."""
    config = alembic_config(version_locations)

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    async with database.writer.begin() as connection:
        await connection.run_sync(upgrade)
