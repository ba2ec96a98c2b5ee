"""Secrets at rest: values the platform must read back in clear, sealed under data keys.

Passwords, refresh tokens and device tokens are only ever compared, so only their hashes are
stored. A TOTP secret or a webhook signing secret must be used as it is (to check a code, to sign
a request), so it is sealed instead: Fernet (AES-128-CBC with HMAC-SHA256, random IV, the key id
implied by trying each key) under the keys of `MEDCLOUD_DATA_KEYS`, or of a key file made in
`var_dir` on first start. The first key seals; every key opens, so a new key can be put first and
the stored values sealed again with it (`medcloud keys rotate`) before the old one is dropped.

A `Sealed` column seals on write and opens on read. Its keys are bound to the database's engines
by the composition root (`bind`): nothing is read at import time, and two runtimes in one process
may use different keys.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeDecorator

from medcloud.config import Settings
from medcloud.platform.datadir import KEYS, make_private_directory, open_private_file
from medcloud.platform.db import Base, Database

log = structlog.get_logger(__name__)

KEY_FILE = "data.keys"
"""File in `var_dir/keys` holding the generated data keys, one per line, the sealing one first."""
SETTING = "MEDCLOUD_DATA_KEYS"
_FERNET_VERSION = 0x80
_FERNET_OVERHEAD = 57
"""Bytes of a Fernet token besides its ciphertext: version, timestamp, IV and HMAC."""


class DataKeyError(ValueError):
    """The configured data keys are missing or malformed (the message never holds a key)."""


class SealBroken(Exception):
    """No data key opens a stored value: it was sealed under a key that is no longer configured,
    or it was never sealed (a database not migrated yet)."""


class Sealer:
    """Seal with the first data key; open with any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise DataKeyError("no data key given")
        fernets = []
        for number, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, binascii.Error):
                # Never the key itself in the message: it ends up in logs and tracebacks.
                raise DataKeyError(
                    f"data key {number} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "`medcloud keys new` makes one)"
                ) from None
        self._keys = MultiFernet(fernets)
        self.count = len(fernets)

    @classmethod
    def from_text(cls, text: str) -> Sealer:
        """Build from keys separated by commas or line breaks, the sealing one first."""
        return cls(list(parse_keys(text)))

    def seal(self, clear: str) -> str:
        """Return `clear` sealed under the first key."""
        return self._keys.encrypt(clear.encode()).decode("ascii")

    def unseal(self, sealed: str) -> str:
        """Return the clear value of `sealed`; raise SealBroken when no key opens it."""
        try:
            return self._keys.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError):
            raise SealBroken(_BROKEN) from None

    def reseal(self, sealed: str) -> str:
        """Return `sealed` sealed again under the first key (rotation)."""
        try:
            return self._keys.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SealBroken(_BROKEN) from None


_BROKEN = (
    "no data key opens a stored secret: it was sealed under a key no longer in "
    f"{SETTING} (or var_dir/{KEYS}/{KEY_FILE}), or the database is not migrated yet"
)


def parse_keys(text: str) -> Iterator[str]:
    """Yield the keys in `text`, separated by commas or line breaks."""
    for part in text.replace("\n", ",").split(","):
        if part.strip():
            yield part.strip()


def new_key() -> str:
    """Return a new random data key."""
    return Fernet.generate_key().decode("ascii")


def looks_sealed(value: str) -> bool:
    """Tell whether `value` has the form of a sealed value (a Fernet token), not whether it
    opens: TOTP secrets (base32) and webhook secrets (`whsec_…`) never have it."""
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (ValueError, binascii.Error):
        return False
    return len(raw) > _FERNET_OVERHEAD and raw[0] == _FERNET_VERSION


def key_file(settings: Settings) -> Path:
    """Where the generated data keys are kept when none are configured."""
    return settings.var_dir / KEYS / KEY_FILE


def configured_keys(settings: Settings) -> str | None:
    """Return the keys of `MEDCLOUD_DATA_KEYS`, None when it is unset or blank."""
    if settings.data_keys is None or not settings.data_keys.get_secret_value().strip():
        return None
    return settings.data_keys.get_secret_value()


def load_sealer(settings: Settings) -> Sealer:
    """Return the configured data keys, or those of the key file, made (0600) on first use."""
    configured = configured_keys(settings)
    if configured is not None:
        return Sealer.from_text(configured)
    path = key_file(settings)
    if not path.exists():
        try:
            write_key_file(path, [new_key()], replace=False)
        except FileExistsError:
            pass  # another process of this deployment made it first: use theirs
        else:
            # Every process of a deployment must share these keys: a split deployment on
            # several hosts sets MEDCLOUD_DATA_KEYS instead.
            log.info("data_keys.generated", path=str(path))
    return Sealer.from_text(path.read_text())


def write_key_file(path: Path, keys: Sequence[str], *, replace: bool) -> None:
    """Write `keys` to `path` (0600) whole or not at all; without `replace`, only if it is
    absent (FileExistsError otherwise)."""
    make_private_directory(path.parent)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    descriptor = open_private_file(partial, os.O_WRONLY | os.O_EXCL)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write("".join(f"{key}\n" for key in keys))
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(partial, path)
        else:
            # A link fails if the name is taken, so a reader never sees a half-written file.
            os.link(partial, path)
    finally:
        partial.unlink(missing_ok=True)


# Keyed by dialect, the one object a column type is handed that tells which engine it runs on.
_BOUND: weakref.WeakKeyDictionary[Dialect, Sealer] = weakref.WeakKeyDictionary()


def bind(database: Database, sealer: Sealer) -> None:
    """Make `Sealed` columns of this database's engines seal and open with `sealer`."""
    _BOUND[database.writer.dialect] = sealer
    _BOUND[database.reader.dialect] = sealer


def sealer_for(dialect: Dialect) -> Sealer:
    """Return the keys bound to the engine of `dialect`."""
    sealer = _BOUND.get(dialect)
    if sealer is None:
        raise DataKeyError(
            "no data keys are bound to this database; build it with medcloud.bootstrap.bootstrap "
            "or medcloud.platform.sealing.bind"
        )
    return sealer


class Sealed(TypeDecorator[str]):
    """A string column stored sealed: in clear in Python, never in the database."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else sealer_for(dialect).seal(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else sealer_for(dialect).unseal(value)


def sealed_columns() -> list[tuple[sa.Table, sa.Column[Any]]]:
    """Every `Sealed` column of the tables declared so far (load the contexts first)."""
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, Sealed)
    ]


def _raw(table_name: str, column: str, key: str = "id") -> sa.TableClause:
    # The stored text as it is, without the column type that would open it.
    return sa.table(table_name, sa.column(key, sa.Text), sa.column(column, sa.Text))


def seal_stored(connection: Connection, table_name: str, column: str, *, key: str = "id") -> int:
    """Seal every value of `column` still in clear (a migration's upgrade); return how many."""
    raw = _raw(table_name, column, key)
    rows = connection.execute(sa.select(raw.c[key], raw.c[column]).where(raw.c[column].isnot(None)))
    clear = [(row_key, value) for row_key, value in rows if not looks_sealed(value)]
    if clear:
        sealer = sealer_for(connection.dialect)
        _update(connection, raw, key, column, [(k, sealer.seal(v)) for k, v in clear])
    return len(clear)


def unseal_stored(connection: Connection, table_name: str, column: str, *, key: str = "id") -> int:
    """Put every sealed value of `column` back in clear (a migration's downgrade)."""
    raw = _raw(table_name, column, key)
    rows = connection.execute(sa.select(raw.c[key], raw.c[column]).where(raw.c[column].isnot(None)))
    sealed = [(row_key, value) for row_key, value in rows if looks_sealed(value)]
    if sealed:
        sealer = sealer_for(connection.dialect)
        _update(connection, raw, key, column, [(k, sealer.unseal(v)) for k, v in sealed])
    return len(sealed)


def _update(
    connection: Connection,
    raw: sa.TableClause,
    key: str,
    column: str,
    values: Sequence[tuple[str, str]],
) -> None:
    statement = (
        sa.update(raw)
        .where(raw.c[key] == sa.bindparam("row_key"))
        .values({column: sa.bindparam("new_value")})
    )
    parameters = [{"row_key": k, "new_value": v} for k, v in values]
    if connection.dialect.name != "sqlite":
        connection.execute(statement, parameters)
        return
    # SQLite leaves a rewritten value's old bytes in the page's free space; have it zero them,
    # so no clear secret outlives its sealing in the file. Only for this: it costs every delete.
    previous = connection.exec_driver_sql("PRAGMA secure_delete").scalar()
    connection.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        connection.execute(statement, parameters)
    finally:
        connection.exec_driver_sql(f"PRAGMA secure_delete = {int(previous or 0)}")


async def reseal_everything(database: Database) -> dict[str, int]:
    """Seal every stored secret again under the first data key; return counts per column.

    Every process must know the first key before this runs, or they cannot open what it wrote."""

    def reseal(connection: Connection) -> dict[str, int]:
        sealer = sealer_for(connection.dialect)
        counts: dict[str, int] = {}
        for table, column in sealed_columns():
            [key] = table.primary_key.columns
            raw = _raw(table.name, column.name, key.name)
            rows = connection.execute(
                sa.select(raw.c[key.name], raw.c[column.name]).where(raw.c[column.name].isnot(None))
            ).all()
            resealed = [(row_key, sealer.reseal(value)) for row_key, value in rows]
            if resealed:
                _update(connection, raw, key.name, column.name, resealed)
            counts[f"{table.name}.{column.name}"] = len(resealed)
        return counts

    async with database.writer.begin() as connection:
        return await connection.run_sync(reseal)


async def check_keys(database: Database) -> None:
    """Fail at start, naming the column, when the data keys cannot open what is stored."""

    def check(connection: Connection) -> None:
        sealer = sealer_for(connection.dialect)
        present = set(sa.inspect(connection).get_table_names())
        for table, column in sealed_columns():
            if table.name not in present:
                continue
            raw = _raw(table.name, column.name)
            value = connection.execute(
                sa.select(raw.c[column.name]).where(raw.c[column.name].isnot(None)).limit(1)
            ).scalar()
            if value is None:
                continue
            try:
                sealer.unseal(value)
            except SealBroken as exc:
                raise SealBroken(f"{table.name}.{column.name}: {exc}") from None

    async with database.reader.connect() as connection:
        await connection.run_sync(check)


async def rotate_keys(settings: Settings, database: Database) -> dict[str, int]:
    """Seal every stored secret again under the first data key; return counts per column.

    With `MEDCLOUD_DATA_KEYS`, its first key is the new one (put there, and known to every
    process, beforehand). With the key file, a new key is put at its head first and the older
    ones are dropped from it once everything is sealed under the new one: run it with medcloud
    stopped, since a running process knows only the keys it started with.
    """
    if configured_keys(settings) is not None:
        bind(database, load_sealer(settings))
        return await reseal_everything(database)
    path = key_file(settings)
    old = list(parse_keys(path.read_text())) if path.exists() else []
    fresh = new_key()
    # Both on disk before anything is sealed under the new key: a failure half-way leaves a
    # file that still opens every value, and running the command again finishes the job.
    write_key_file(path, [fresh, *old], replace=True)
    bind(database, Sealer([fresh, *old]))
    counts = await reseal_everything(database)
    write_key_file(path, [fresh], replace=True)
    bind(database, Sealer([fresh]))
    return counts
