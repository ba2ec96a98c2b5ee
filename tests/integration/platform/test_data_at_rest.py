"""Data at rest: the embedded data directory is private, and secrets are sealed in the database
and never logged."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import smtplib
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from pydantic import SecretStr
from sqlalchemy.engine import Connection
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from medcloud import cli
from medcloud.bootstrap import load_contexts
from medcloud.config import Settings
from medcloud.notifications.mailbox import LocalMailbox
from medcloud.platform.datadir import prepare_data_directory
from medcloud.platform.db import Database, UTCDateTime, create_database
from medcloud.platform.logging import configure_logging
from medcloud.platform.migrate import alembic_config, migrate
from medcloud.platform.sealing import (
    SealBroken,
    Sealer,
    bind,
    key_file,
    load_sealer,
    looks_sealed,
    parse_keys,
    seal_stored,
)
from medcloud.platform.sealing import new_key as generate_key
from medcloud.platform.security import hash_password
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.client import Api, bearer, eventually, reading, running
from tests.support.template import sqlite_path

LOGIN = {"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def too_open(root: Path) -> list[str]:
    """Every file or directory under `root`, itself included, that others may use (a symbolic
    link's own mode means nothing)."""
    paths = [root]
    for directory, subdirectories, files in os.walk(root):
        paths.extend(Path(directory, name) for name in (*subdirectories, *files))
    modes = {path: path.lstat().st_mode for path in paths}
    return [
        f"{path.relative_to(root)} {oct(stat.S_IMODE(mode))}"
        for path, mode in modes.items()
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077
    ]


async def enrol_totp(api: Api) -> str:
    """Enrol the admin's second factor, confirm it by signing in, and return its secret."""
    enrolment = await api.http.post("/api/v1/auth/mfa/enrol", data=LOGIN)
    assert enrolment.status_code == 200, enrolment.text
    secret = str(enrolment.json()["secret"])
    signed_in = await api.http.post(
        "/api/v1/auth/token", data=LOGIN | {"totp": pyotp.TOTP(secret).now()}
    )
    assert signed_in.status_code == 200, signed_in.text
    return secret


async def add_webhook(api: Api, token: str) -> str:
    created = await api.http.post(
        "/api/v1/webhooks", json={"url": "https://ehr.stmary.example/hook"}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    return str(created.json()["secret"])


@pytest.mark.empty_database  # fresh: the app makes its database itself
async def test_a_fresh_embedded_data_directory_has_no_file_readable_by_other_users(
    settings: Settings,
) -> None:
    # No umask to lean on: every mode must be set where the file or directory is made. With the
    # real services the directory holds only keys and objects; it is checked all the same.
    with umask(0):
        async with running(settings) as api:
            token = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
            await enrol_totp(api)
            device = await api.register_device(token)
            assert (await api.send(device, reading(heart_rate=72))).status_code == 201
            await add_webhook(api, token)
            objects = api.app.state.runtime.objects
            await objects.put_bytes("uploads/probe/readings.ndjson", b"{}\n")
            await objects.move("uploads/probe/readings.ndjson", "processed/probe/readings.ndjson")
            if settings.is_sqlite:
                database = sqlite_path(settings)
                wal = database.with_name(database.name + "-wal")
                assert wal.exists() and wal.stat().st_size > 0  # SQLite writes through its WAL
                assert database.with_name(database.name + "-shm").exists()
            assert key_file(settings).exists()
            assert (settings.var_dir / "objects" / "processed" / "probe").is_dir()
            assert too_open(settings.var_dir) == []
        assert too_open(settings.var_dir) == []


async def test_a_data_directory_found_too_open_is_tightened_at_start_with_a_warning(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    with umask(0):
        (var_dir / "objects" / "firmware").mkdir(parents=True)
        (var_dir / "objects" / "firmware" / "image.bin").write_bytes(b"\0" * 16)
        (var_dir / "medcloud.db").write_bytes(b"")
        (var_dir / "medcloud.db-wal").write_bytes(b"")
        elsewhere = tmp_path / "shared.txt"
        elsewhere.write_text("not medcloud's")
        (var_dir / "link").symlink_to(elsewhere)
    found = too_open(var_dir)
    assert len(found) == 6, found

    with capture_logs() as logs:
        prepare_data_directory(var_dir, sqlite_file=var_dir / "medcloud.db")

    assert too_open(var_dir) == []
    assert stat.S_IMODE((var_dir / "medcloud.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o666  # a link is not followed
    [warning] = [entry for entry in logs if entry["event"] == "data_dir.tightened"]
    assert warning["log_level"] == "warning"
    assert warning["count"] == 6 and warning["paths"][0] == "."


async def database_dump(settings: Settings, *, showing: str) -> str:
    """Everything the database holds, as an attacker with a copy of it would read it; each way
    of reading it must find `showing`, a value stored in clear."""
    if settings.is_sqlite:
        path = sqlite_path(settings)
        raw = b"".join(
            p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)
        )
        with contextlib.closing(sqlite3.connect(path)) as connection:
            statements = "\n".join(connection.iterdump())
        assert showing.encode() in raw and showing in statements
        return raw.decode("latin-1") + statements
    # Both where pg_dump is installed, so the query that stands in for it is tried too.
    dumped = [await _select_every_text_column(settings)]
    if shutil.which("pg_dump"):
        dsn = "postgresql://" + settings.database_url.split("://", 1)[1]
        process = await asyncio.create_subprocess_exec(
            "pg_dump", "--data-only", "--no-owner", dsn, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        dumped.append(out.decode())
    assert all(showing in part for part in dumped)
    return "\n".join(dumped)


async def _select_every_text_column(settings: Settings) -> str:
    database = create_database(settings.database_url)
    try:
        async with database.reader.connect() as connection:

            def read(sync: Connection) -> list[str]:
                found: list[str] = []
                inspector = sa.inspect(sync)
                for table in inspector.get_table_names():
                    for column in inspector.get_columns(table):
                        if isinstance(column["type"], sa.String | sa.Text | sa.JSON):
                            rows = sync.execute(
                                sa.select(sa.column(column["name"], sa.Text)).select_from(
                                    sa.table(table)
                                )
                            )
                            found.extend(str(value) for (value,) in rows)
                return found

            return "\n".join(await connection.run_sync(read))
    finally:
        await database.dispose()


async def test_a_dump_of_the_database_shows_no_totp_secret_or_device_credential_in_clear(
    settings: Settings,
) -> None:
    async with running(settings) as api:
        token = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        totp_secret = await enrol_totp(api)
        device = await api.register_device(token, serial="DUMP-1")
        rotated = await api.http.post(
            f"/api/v1/devices/{device['id']}/credentials/rotate",
            json={"grace_seconds": 60},
            headers=bearer(token),
        )
        assert rotated.status_code == 201, rotated.text
        webhook_secret = await add_webhook(api, token)

    dump = await database_dump(settings, showing="DUMP-1")
    for secret in (
        totp_secret,
        device["token"],
        rotated.json()["token"],
        webhook_secret,
        ADMIN_PASSWORD,
    ):
        assert secret not in dump
    # Nor the key that would open what is sealed.
    assert load_sealer(settings).count == 1
    assert key_file(settings).read_text().strip() not in dump


# identity and notifications as they stood before their secrets were sealed.
organisation = sa.table(
    "organisation",
    sa.column("id", sa.String),
    sa.column("name", sa.String),
    sa.column("created_at", UTCDateTime()),
    sa.column("require_admin_mfa", sa.Boolean),
)
user_account = sa.table(
    "user_account",
    sa.column("id", sa.String),
    sa.column("organisation_id", sa.String),
    sa.column("email", sa.String),
    sa.column("password_hash", sa.String),
    sa.column("role", sa.String),
    sa.column("is_active", sa.Boolean),
    sa.column("created_at", UTCDateTime()),
    sa.column("failed_logins", sa.Integer),
    sa.column("totp_secret", sa.String),
    sa.column("mfa_enabled", sa.Boolean),
)
notify_webhook = sa.table(
    "notify_webhook",
    sa.column("id", sa.String),
    sa.column("organisation_id", sa.String),
    sa.column("url", sa.String),
    sa.column("secret", sa.String),
    sa.column("description", sa.String),
    sa.column("created_at", UTCDateTime()),
)
ST_MARY = "00000000-0000-4000-8000-00000000a001"
ALICE = "00000000-0000-4000-8000-00000000a002"
CLEAR_TOTP = pyotp.random_base32()
COLLEAGUES_TOTP = [pyotp.random_base32() for _ in range(20)]
"""Enough rows that rewriting them leaves old bytes in free space, as in a real database."""
CLEAR_WEBHOOK_SECRET = "whsec_" + "k" * 43
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


async def alembic(database: Database, step: Callable[[Config, str], None], *targets: str) -> None:
    config = alembic_config([c.migrations for c in load_contexts() if c.migrations])

    def apply(connection: Connection) -> None:
        config.attributes["connection"] = connection
        for target in targets:
            step(config, target)

    async with database.writer.begin() as connection:
        await connection.run_sync(apply)


async def stored_secrets(database: Database) -> tuple[str, str]:
    async with database.reader.connect() as connection:
        totp = await connection.scalar(
            sa.select(user_account.c.totp_secret).where(user_account.c.id == ALICE)
        )
        webhook = await connection.scalar(sa.select(notify_webhook.c.secret))
    return str(totp), str(webhook)


@pytest.fixture
async def old_database(settings: Settings) -> AsyncIterator[Database]:
    """A database at identity_0002 and notifications_0001 holding secrets in clear, with the
    deployment's data keys bound."""
    prepare_data_directory(settings.var_dir)
    database = create_database(settings.resolved_database_url)
    bind(database, load_sealer(settings))
    await alembic(database, command.upgrade, "identity_0002", "notifications_0001")
    async with database.writer.begin() as connection:
        await connection.execute(
            sa.insert(organisation).values(
                id=ST_MARY, name="St Mary's", created_at=NOW, require_admin_mfa=False
            )
        )
        await connection.execute(
            sa.insert(user_account).values(
                id=ALICE,
                organisation_id=ST_MARY,
                email=ADMIN_EMAIL,
                password_hash=await hash_password(ADMIN_PASSWORD),
                role="admin",
                is_active=True,
                created_at=NOW,
                failed_logins=0,
                totp_secret=CLEAR_TOTP,
                mfa_enabled=True,
            )
        )
        await connection.execute(
            sa.insert(user_account),
            [
                {
                    "id": f"colleague-{number}",
                    "organisation_id": ST_MARY,
                    "email": f"colleague.{number}@stmary.example",
                    "password_hash": "unused",
                    "role": "nurse",
                    "is_active": True,
                    "created_at": NOW,
                    "failed_logins": 0,
                    "totp_secret": secret,
                    "mfa_enabled": True,
                }
                for number, secret in enumerate(COLLEAGUES_TOTP)
            ],
        )
        await connection.execute(
            sa.insert(notify_webhook).values(
                id=ALICE,
                organisation_id=ST_MARY,
                url="https://ehr.stmary.example/hook",
                secret=CLEAR_WEBHOOK_SECRET,
                description="",
                created_at=NOW,
            )
        )
    # As in a database long in use, the clear values are in the main file, not just the WAL.
    await database.dispose()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.mark.empty_database  # migrates up from before the secrets were sealed
async def test_upgrading_seals_the_secrets_stored_in_clear_and_downgrading_opens_them(
    settings: Settings, old_database: Database
) -> None:
    await migrate(old_database, [c.migrations for c in load_contexts() if c.migrations])
    totp, webhook = await stored_secrets(old_database)
    assert looks_sealed(totp) and looks_sealed(webhook)
    sealer = load_sealer(settings)
    assert (sealer.unseal(totp), sealer.unseal(webhook)) == (CLEAR_TOTP, CLEAR_WEBHOOK_SECRET)
    await old_database.dispose()
    if settings.is_sqlite:
        dump = await database_dump(settings, showing=ADMIN_EMAIL)
        for secret in (CLEAR_TOTP, *COLLEAGUES_TOTP, CLEAR_WEBHOOK_SECRET):
            assert secret not in dump

    async with running(settings) as api:
        code = pyotp.TOTP(CLEAR_TOTP).now()
        signed_in = await api.http.post("/api/v1/auth/token", data=LOGIN | {"totp": code})
        assert signed_in.status_code == 200, signed_in.text

    await alembic(old_database, command.downgrade, "identity_0002", "notifications_0001")
    assert await stored_secrets(old_database) == (CLEAR_TOTP, CLEAR_WEBHOOK_SECRET)


@pytest.fixture
def debug_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Every log line the app writes at DEBUG, standard-library loggers included."""
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level, structlog.get_config()
    configure_logging("DEBUG")
    capsys.readouterr()
    written: list[str] = []

    def read() -> str:
        written.append(capsys.readouterr().out)
        return "".join(written)

    try:
        yield read
    finally:
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.configure(**config)


async def test_secrets_never_reach_the_logs(
    settings: Settings, debug_logs: Callable[[], str]
) -> None:
    wrong_password = "mallory-guesses-" + "x" * 8
    async with running(settings) as api:
        refused = await api.http.post(
            "/api/v1/auth/token", data=LOGIN | {"password": wrong_password}
        )
        assert refused.status_code == 401
        totp_secret = await enrol_totp(api)
        signed_in = await api.http.post(
            "/api/v1/auth/token", data=LOGIN | {"totp": pyotp.TOTP(totp_secret).now()}
        )
        tokens: dict[str, Any] = signed_in.json()
        admin = str(tokens["access_token"])
        device = await api.register_device(admin)
        assert (await api.send(device, reading(heart_rate=190))).status_code == 201
        await eventually(lambda: api.alerts(admin))
        rotated = await api.http.post(
            f"/api/v1/devices/{device['id']}/credentials/rotate",
            json={"grace_seconds": 60},
            headers=bearer(admin),
        )
        new_token = rotated.json()["token"]
        refreshed = await api.http.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200
        webhook_secret = await add_webhook(api, admin)
        await api.http.get(f"/api/v1/devices/{device['id']}/data", headers=bearer(new_token))

    out = debug_logs()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # The capture does hold the app's logs of every step above.
    logged = {line.get("endpoint") for line in lines if line.get("event") == "http.request"}
    assert {
        "/api/v1/auth/token",
        "/api/v1/auth/mfa/enrol",
        "/api/v1/auth/refresh",
        "/api/v1/devices",
        "/api/v1/devices/{device_id}/data",
        "/api/v1/devices/{device_id}/credentials/rotate",
        "/api/v1/webhooks",
    } <= logged
    data_keys = key_file(settings).read_text().split()
    for secret in (
        ADMIN_PASSWORD,
        wrong_password,
        totp_secret,
        device["token"],
        new_token,
        webhook_secret,
        admin,
        tokens["refresh_token"],
        refreshed.json()["refresh_token"],
        *data_keys,
    ):
        assert secret not in out


async def test_sealing_in_place_leaves_no_clear_copy_in_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    secrets = [pyotp.random_base32() for _ in range(20)]
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE user_account (id TEXT PRIMARY KEY, totp_secret TEXT)")
        connection.executemany(
            "INSERT INTO user_account VALUES (?, ?)", [(f"u{n}", s) for n, s in enumerate(secrets)]
        )
        connection.commit()
    database = create_database(f"sqlite+aiosqlite:///{path}")
    bind(database, load_sealer(Settings(var_dir=tmp_path / "var")))
    try:
        async with database.writer.begin() as connection:
            # As SQLite is built by default (some distributions build it zeroing already).
            await connection.exec_driver_sql("PRAGMA secure_delete = 0")
            sealed = await connection.run_sync(seal_stored, "user_account", "totp_secret")
        async with database.writer.connect() as connection:
            # The connection is pooled: it must not keep zeroing every later delete.
            assert await connection.scalar(sa.text("PRAGMA secure_delete")) == 0
    finally:
        await database.dispose()
    assert sealed == len(secrets)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("old.db"))
    assert not [secret for secret in secrets if secret.encode() in stored]


async def stored_in_database(settings: Settings) -> list[str]:
    """Every stored TOTP secret and webhook secret, as stored."""
    database = create_database(settings.resolved_database_url)
    try:
        async with database.reader.connect() as connection:
            totp = await connection.scalars(
                sa.select(user_account.c.totp_secret).where(user_account.c.totp_secret.isnot(None))
            )
            webhooks = await connection.scalars(sa.select(notify_webhook.c.secret))
            return [*totp, *webhooks]
    finally:
        await database.dispose()


async def enrol_and_add_webhook(settings: Settings) -> tuple[str, str]:
    async with running(settings) as api:
        token = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        totp_secret = await enrol_totp(api)
        webhook_secret = await add_webhook(api, token)
    return totp_secret, webhook_secret


async def medcloud(settings: Settings, *arguments: str) -> Result:
    """Run the `medcloud` command on the deployment of `settings` (it runs its own loop)."""
    secret = settings.data_keys.get_secret_value() if settings.data_keys else ""
    env = {
        "MEDCLOUD_VAR_DIR": str(settings.var_dir),
        "MEDCLOUD_DATABASE_URL": settings.database_url,
        "MEDCLOUD_DATA_KEYS": secret,
        # bootstrap() sets the hashing cost for the whole process: keep the suite's low one.
        "MEDCLOUD_IDENTITY__ARGON2_TIME_COST": str(settings.identity.argon2_time_cost),
        "MEDCLOUD_IDENTITY__ARGON2_MEMORY_KIB": str(settings.identity.argon2_memory_kib),
        "MEDCLOUD_IDENTITY__ARGON2_PARALLELISM": str(settings.identity.argon2_parallelism),
    }
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(arguments), env=env)


async def test_rotating_the_key_file_seals_every_secret_under_a_new_key_and_drops_the_old(
    settings: Settings,
) -> None:
    totp_secret, webhook_secret = await enrol_and_add_webhook(settings)
    [old_key] = parse_keys(key_file(settings).read_text())

    result = await medcloud(settings, "keys", "rotate")

    assert result.exit_code == 0, result.output
    assert "user_account.totp_secret: 1 sealed again" in result.output
    [new_key] = parse_keys(key_file(settings).read_text())
    assert new_key != old_key
    assert stat.S_IMODE(key_file(settings).stat().st_mode) == 0o600
    stored = await stored_in_database(settings)
    assert sorted(Sealer([new_key]).unseal(value) for value in stored) == sorted(
        [totp_secret, webhook_secret]
    )
    with pytest.raises(SealBroken):
        Sealer([old_key]).unseal(stored[0])
    async with running(settings) as api:
        code = pyotp.TOTP(totp_secret).now()
        signed_in = await api.http.post("/api/v1/auth/token", data=LOGIN | {"totp": code})
        assert signed_in.status_code == 200, signed_in.text


async def test_rotating_configured_keys_seals_every_secret_under_the_first(
    settings: Settings,
) -> None:
    old_key, new_key = generate_key(), generate_key()
    before = settings.model_copy(update={"data_keys": SecretStr(old_key)})
    totp_secret, webhook_secret = await enrol_and_add_webhook(before)
    after = settings.model_copy(update={"data_keys": SecretStr(f"{new_key},{old_key}")})

    result = await medcloud(after, "keys", "rotate")

    assert result.exit_code == 0, result.output
    assert old_key not in result.output and new_key not in result.output
    stored = await stored_in_database(settings)
    assert sorted(Sealer([new_key]).unseal(value) for value in stored) == sorted(
        [totp_secret, webhook_secret]
    )
    assert not key_file(settings).exists()  # configured keys need no file


async def test_a_process_whose_keys_cannot_open_what_is_stored_refuses_to_start(
    settings: Settings,
) -> None:
    await enrol_and_add_webhook(settings)
    strange = settings.model_copy(update={"data_keys": SecretStr(generate_key())})
    with pytest.raises(SealBroken, match=r"^(user_account\.totp|notify_webhook\.)secret: no"):
        async with running(strange):
            pass


def send_mail(port: int, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.sendmail("alarms@medcloud.test", ["bob@stmary.example"], message)


async def test_the_demo_mailbox_in_the_data_directory_keeps_its_messages_private(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    with umask(0):
        prepare_data_directory(var_dir)
        box = LocalMailbox(directory=var_dir / "mailbox")
        await box.start()
        try:
            message = b"Subject: [HIGH] Alarm\r\n\r\nacknowledge: https://medcloud.test/ack/x\r\n"
            await asyncio.to_thread(send_mail, box.port, message)
            await box.wait_for(1, timeout=5)
        finally:
            await box.stop()
    assert len(list((var_dir / "mailbox" / "new").iterdir())) == 1
    assert too_open(var_dir) == []
