"""Start a fresh medcloud deployment on PostgreSQL for one benchmark run, and watch its processes.

Everything started here runs on ports and in a database of its own and is stopped by pid when
the run ends; the machine's shared services are only used, never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ADMIN = ("bench.admin@example.org", "bench-admin-passphrase")
BENCH_LIMITS = "1000000000/minute"


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _admin_sql(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.contextmanager
def fresh_database(postgres: str) -> Iterator[str]:
    """Create a database for the run and drop it afterwards; yield its asyncpg DSN."""
    name = f"medcloud_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin_sql(postgres, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_admin_sql(postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def own_database(stack: contextlib.ExitStack, deployment: str, postgres: str) -> tuple[Path, str]:
    """Give a run its var directory and a database of its own for the block of `stack`: a
    SQLite file in that directory (`embedded`), else a new PostgreSQL database; return both."""
    var = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "var"
    if deployment == "embedded":
        var.mkdir()
        return var, f"sqlite:///{var / 'medcloud.db'}"
    return var, stack.enter_context(fresh_database(postgres))


def medcloud_env(var: Path, dsn: str, **extra: str) -> dict[str, str]:
    """The environment of a medcloud process of this deployment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCLOUD_")}
    return (
        env
        | {
            "MEDCLOUD_VAR_DIR": str(var),
            "MEDCLOUD_LOG_LEVEL": "WARNING",
            "MEDCLOUD_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://").replace(
                "sqlite://", "sqlite+aiosqlite://"
            ),
            "MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL": ADMIN[0],
            "MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1],
            # What is measured is ingest, not the hash cost of the one sign-in.
            "MEDCLOUD_IDENTITY__ARGON2_TIME_COST": "1",
            "MEDCLOUD_IDENTITY__ARGON2_MEMORY_KIB": "1024",
            # Benchmarks measure throughput, not the limiter: a fleet sends as fast as it can
            # and one admin registers every device, far past any real caller's limits. Limits
            # none reaches still count every request, as production does.
            "MEDCLOUD_RATE_LIMITS__DEFAULT": BENCH_LIMITS,
            "MEDCLOUD_RATE_LIMITS__INGEST": BENCH_LIMITS,
            "MEDCLOUD_RATE_LIMITS__ANONYMOUS": BENCH_LIMITS,
        }
        | extra
    )


@contextlib.contextmanager
def process(
    args: Sequence[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process for the block; terminate it (by pid, only it) afterwards."""
    with log.open("ab") as out:
        child = subprocess.Popen(list(args), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def medcloud(*args: str) -> list[str]:
    """The command line of `medcloud ARGS…` in this interpreter."""
    return [sys.executable, "-m", "medcloud.cli", *args]


def wait_ready(base: str, *, timeout: float = 60) -> None:
    """Wait until the server answers /ready with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not become ready in {timeout:g} s")


async def admin_headers(client: httpx.AsyncClient, admin: Sequence[str] = ADMIN) -> dict[str, str]:
    """Sign in as an admin; return the bearer header."""
    signed_in = await client.post(
        "/api/v1/auth/token", data={"username": admin[0], "password": admin[1]}
    )
    signed_in.raise_for_status()
    return {"Authorization": f"Bearer {signed_in.json()['access_token']}"}


async def register_monitors(base: str, patients: int) -> list[dict[str, Any]]:
    """Create `patients` patients, each with a monitor assigned; return the monitors."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        headers = await admin_headers(client)

        async def one(i: int) -> dict[str, Any]:
            patient = await client.post(
                "/api/v1/patients",
                json={
                    "identifier_system": "urn:bench",
                    "identifier_value": f"BENCH-{i:05d}",
                    "family_name": "Bench",
                    "given_name": f"Patient {i}",
                    "birth_date": "1950-01-01",
                },
                headers=headers,
            )
            patient.raise_for_status()
            patient_id = patient.json()["id"]
            device = await client.post(
                "/api/v1/devices",
                json={
                    "serial_number": f"MON-{i:05d}",
                    "model": "Monitor",
                    "manufacturer": "X",
                    "patient_id": patient_id,
                },
                headers=headers,
            )
            device.raise_for_status()
            monitor: dict[str, Any] = device.json() | {"patient_id": patient_id}
            return monitor

        monitors: list[dict[str, Any]] = []
        for first in range(0, patients, 25):
            monitors += await asyncio.gather(
                *(one(i) for i in range(first, min(first + 25, patients)))
            )
        return monitors


async def register_fleet(
    base: str, devices: int, *, admin: Sequence[str] = ADMIN
) -> list[dict[str, Any]]:
    """Sign in as an admin and register `devices` devices; return them with their tokens."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        headers = await admin_headers(client, admin)
        fleet = []
        for i in range(devices):
            response = await client.post(
                "/api/v1/devices",
                json={"serial_number": f"BENCH-{i:05d}", "model": "Monitor", "manufacturer": "X"},
                headers=headers,
            )
            response.raise_for_status()
            fleet.append(response.json())
        return fleet


@dataclass
class Usage:
    """CPU seconds and peak resident memory of a set of processes over a window."""

    processes: list[psutil.Process]
    _cpu_before: float = 0.0
    peak_rss_mb: float = 0.0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def _cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)

    async def __aenter__(self) -> Usage:
        self._cpu_before = self._cpu()
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            rss = sum(p.memory_info().rss for p in self.processes) / 1024 / 1024
            self.peak_rss_mb = max(self.peak_rss_mb, rss)
            await asyncio.sleep(0.2)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None  # noqa: S101
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.cpu_seconds = self._cpu() - self._cpu_before

    cpu_seconds: float = 0.0


async def stored_rows(dsn: str) -> int:
    """Count the rows in `reading` (`dsn` a PostgreSQL DSN or `sqlite:///path`)."""
    if dsn.startswith("sqlite:///"):
        return await asyncio.to_thread(_sqlite_rows, dsn.removeprefix("sqlite:///"))
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM reading"))
    finally:
        await connection.close()


def _sqlite_rows(path: str) -> int:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
        return int(connection.execute("SELECT count(*) FROM reading").fetchone()[0])
