"""Engines, the declarative base every context's tables share, and column types that behave alike on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base; each context declares only its own tables on it."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a timezone")
        value = value.astimezone(dt.UTC)
        # SQLite compares datetimes as text, so every value must share one zone-less form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        del dialect  # both dialects hand back UTC; only SQLite's lacks the zone
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(frozen=True)
class Database:
    """The engines of one process: `writer` for use cases, `reader` for queries that must see
    every commit, `replica` for lists, charts and reports, which may lag.

    On SQLite every write transaction starts with BEGIN IMMEDIATE: a deferred transaction that
    reads before it writes fails at once with SQLITE_BUSY when another writer got there first,
    whereas an immediate one waits its turn. Queries keep plain deferred transactions so they
    never queue behind writers. On PostgreSQL `writer` and `reader` share one pool, `reader`'s
    statements each on their own (`_reads`), and `replica` is a streaming replica's when one is
    configured, else `reader` again.
    """

    writer: AsyncEngine
    reader: AsyncEngine
    replica: AsyncEngine

    @property
    def dialect(self) -> str:
        """Name the SQL dialect in use (`sqlite` or `postgresql`)."""
        return self.writer.dialect.name

    async def dispose(self) -> None:
        """Close every pooled connection."""
        for engine in {id(e): e for e in (self.writer, self.reader, self.replica)}.values():
            await engine.dispose()


def create_database(url: str, *, read_url: str = "", pool_size: int = 10) -> Database:
    """Build the engines for `url`, tuned for durability: WAL + synchronous=FULL on SQLite;
    `read_url` names a PostgreSQL replica of `url` for the queries that may lag."""
    if url.startswith("sqlite"):
        # One write connection, shared in turn: SQLite has one writer anyway, and waiters queue
        # in the pool, first come first served, instead of in SQLite's busy handler, which
        # retries on sleeps of up to 100 ms. With a pool of them, an alarm's hops (reading,
        # alarm, escalation, email) each queued behind those sleeps: delivery p99 8.4 s at
        # 100 alarms/s; with one connection 1.5 s (docs/benchmarks.md). A transaction that
        # opened a second write session inside itself would now wait for the pool's timeout;
        # none does.
        writer = create_async_engine(url, pool_size=1, max_overflow=0)
        reader = create_async_engine(url)
        _configure_sqlite(writer, begin="BEGIN IMMEDIATE")
        _configure_sqlite(reader, begin="BEGIN")
        return Database(writer=writer, reader=reader, replica=reader)
    # Synchronous commit is PostgreSQL's default; state it so no server setting weakens it.
    engine = _postgresql(url, pool_size, {"synchronous_commit": "on"})
    reader = _reads(engine)
    replica = reader
    if read_url:
        # A replica refuses writes anyway; saying so catches a read URL that names a primary.
        replica = _reads(_postgresql(read_url, pool_size, {"default_transaction_read_only": "on"}))
    return Database(writer=engine, reader=reader, replica=replica)


def _reads(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, for queries: each statement runs on its own, with no BEGIN and ROLLBACK.

    Under READ COMMITTED, PostgreSQL's level, every statement takes a fresh snapshot anyway, so
    a query of several statements sees nothing different outside a transaction; what it saves
    is two of a read's three round trips (a chart's or a page's read was BEGIN, the query and a
    ROLLBACK). A read that needs one snapshot for several statements asks for REPEATABLE READ
    on its connection, which opens a transaction again (`audit/repository.py`).
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _postgresql(url: str, pool_size: int, server_settings: dict[str, str]) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": server_settings},
    )
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 5.0
"""A pooled PostgreSQL connection idle longer than this is checked before it is handed out."""


def _ping_when_idle(engine: AsyncEngine) -> None:
    # SQLAlchemy's pool_pre_ping checks every checkout, which on asyncpg is three round trips
    # (BEGIN, an empty query, ROLLBACK) in front of every transaction: under load, a tenth of
    # a worker's time. A connection in steady use has just proved itself; one that sat idle
    # may have been cut by a restart or a firewall, so only those are checked. A connection cut
    # within the window fails its first statement, which SQLAlchemy recognises as a disconnect
    # and answers by replacing the pool's connections, as it would mid-transaction anyway.
    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards this connection and hands out another (up to three tries).
            raise DisconnectionError("pooled connection is gone") from exc


def _configure_sqlite(engine: AsyncEngine, *, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


def dialect_name(session: AsyncSession) -> str:
    """Name the SQL dialect a session talks to (`sqlite` or `postgresql`)."""
    return session.get_bind().dialect.name


def upsert(session: AsyncSession) -> Any:
    """The `insert` of the session's dialect, which has `on_conflict_do_nothing` and the like."""
    return postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert


def sessionmakers(
    db: Database,
) -> tuple[async_sessionmaker[Any], async_sessionmaker[Any], async_sessionmaker[Any]]:
    """Return (write, read, replica) session factories that keep objects usable after commit."""
    return (
        async_sessionmaker(db.writer, expire_on_commit=False),
        async_sessionmaker(db.reader, expire_on_commit=False),
        async_sessionmaker(db.replica, expire_on_commit=False),
    )
