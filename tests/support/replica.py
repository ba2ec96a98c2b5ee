"""A PostgreSQL primary and a streaming replica of it, both of a test's own.

The replica is made as an operator makes one: `pg_basebackup --write-recovery-conf` from the
running primary, then started on its own port, where it replays the primary's WAL as it streams
in. The tests pause that replay to make the replica lag on purpose. Both servers are killed by
their process groups when the pair is stopped; the machine's shared PostgreSQL is never touched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from bench.instances import POSTGRES_BIN, Postgres


@dataclass(frozen=True)
class Pair:
    """A primary and its replica; URLs name the `medcloud` database on each."""

    primary: Postgres
    replica: Postgres

    @property
    def primary_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.primary.port}/medcloud"

    @property
    def replica_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.replica.port}/medcloud"

    async def _on_replica(self, sql: str) -> object:
        connection = await asyncpg.connect(self.replica.dsn, timeout=5)
        try:
            return await connection.fetchval(sql)
        finally:
            await connection.close()

    async def pause_replay(self) -> None:
        """Stop applying the primary's WAL: from now on the replica lags."""
        await self._on_replica("SELECT pg_wal_replay_pause()")

    async def resume_replay(self) -> None:
        """Catch up with the primary again."""
        await self._on_replica("SELECT pg_wal_replay_resume()")

    async def in_recovery(self) -> bool:
        """Whether the replica is a standby (it refuses writes)."""
        return bool(await self._on_replica("SELECT pg_is_in_recovery()"))


def missing_binaries() -> list[str]:
    """What making the pair needs and this machine lacks."""
    wanted = ("initdb", "postgres", "pg_basebackup")
    return [name for name in wanted if not (POSTGRES_BIN / name).exists()]


@contextmanager
def primary_and_replica(directory: Path) -> Iterator[Pair]:
    """Start a primary with a `medcloud` database and a streaming replica of it."""
    primary = Postgres(directory / "primary")
    replica = Postgres(directory / "replica")
    try:
        primary.init()
        subprocess.run(
            [
                str(POSTGRES_BIN / "pg_basebackup"),
                f"--pgdata={replica.data}",
                "--host=127.0.0.1",
                f"--port={primary.port}",
                "--username=postgres",
                "--wal-method=stream",
                "--write-recovery-conf",
                "--checkpoint=fast",
            ],
            user=replica.user,
            group=replica.user,
            cwd=replica.directory,
            capture_output=True,
            check=True,
            timeout=120,
        )
        replica.start()
        yield Pair(primary=primary, replica=replica)
    finally:
        replica.group.stop()
        primary.group.stop()
