"""Migrated template databases, so a test copies a schema instead of migrating its own.

Every integration test starts an app, and the app migrates every context on start: the same
migrations to the same schema, hundreds of times a run. So each pytest process migrates one
database per backend, once, with the function the app itself calls, and each test's database
starts as a copy of it. The app still migrates on start and finds everything at head. The template
holds only what the migrations create; the bootstrap admin, keys and the rest are still made by
each test's app. Tests that need an empty database (to test the migrations themselves) carry the
`empty_database` marker, and get one.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from medcloud.bootstrap import load_contexts
from medcloud.config import Settings
from medcloud.platform.db import create_database
from medcloud.platform.migrate import migrate
from tests.support import services


async def migrate_to_head(database_url: str) -> None:
    """Migrate the database at `database_url` the way the app does when it starts."""
    database = create_database(database_url)
    try:
        await migrate(database, [c.migrations for c in load_contexts() if c.migrations])
    finally:
        # PostgreSQL copies a template only while nobody is connected to it, and SQLite folds its
        # WAL into the main file when the last connection closes.
        await database.dispose()


async def create_postgres_template(urls: services.ServiceUrls) -> str:
    """Create and migrate a template database on the test server; return its name."""
    name = f"medcloud_tpl_{uuid.uuid4().hex[:12]}"
    url = await services.create_database(urls, name)
    try:
        await migrate_to_head(url)
    except BaseException:
        await services.drop_database(urls, name)
        raise
    return name


def sqlite_path(settings: Settings) -> Path:
    """The file the app keeps its embedded database in."""
    database = make_url(settings.resolved_database_url).database
    if not settings.is_sqlite or not database:
        raise ValueError(f"not a SQLite file: {settings.resolved_database_url}")
    return Path(database)


async def create_sqlite_template(var_dir: Path) -> Path:
    """Migrate the embedded database of a deployment in `var_dir`; return its single file."""
    settings = Settings(var_dir=var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    await migrate_to_head(settings.resolved_database_url)
    path = sqlite_path(settings)
    # The only connection, closing, checkpoints the WAL and deletes it; check that it did, since a
    # copy of the main file alone would otherwise lack the last transactions.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    leftovers = [p for p in path.parent.iterdir() if p != path]
    if leftovers:
        raise RuntimeError(f"the SQLite template is more than one file: {leftovers}")
    return path


def copy_sqlite_template(template: Path, settings: Settings) -> None:
    """Put a copy of the migrated template where the app of `settings` looks for its database."""
    path = sqlite_path(settings)
    # The modes a fresh data directory gets, so the app has nothing to tighten (and warn of).
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    shutil.copyfile(template, path)
    path.chmod(0o600)
