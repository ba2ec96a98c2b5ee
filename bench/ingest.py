"""Drive a fleet of devices over HTTP against a fresh `medcloud serve` on PostgreSQL, and measure
the raw asyncpg COPY of the same rows in the same run.

    .venv/bin/python -m bench.ingest --devices 50 --seconds 30 --batch 500
    .venv/bin/python -m bench.ingest --devices 50 --seconds 30 --batch 1     # single readings

Prints JSON: readings/s accepted (201 received) and stored (rows in the table), p50/p99 latency
from send to 201 (a 201 is sent only after commit, so that is send→stored), server CPU seconds
and peak RSS, and `copy_baseline_rows_per_s` for the same number of rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import psutil

ADMIN = ("bench.admin@example.org", "bench-admin-passphrase")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def fleet(client: httpx.AsyncClient, devices: int) -> list[dict[str, Any]]:
    token = (
        await client.post("/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})
    ).json()["access_token"]
    registered = []
    for i in range(devices):
        response = await client.post(
            "/api/v1/devices",
            json={"serial_number": f"BENCH-{i}", "model": "m", "manufacturer": "x"},
            headers={"Authorization": f"Bearer {token}"},
        )
        registered.append(response.json())
    return registered


async def drive(
    base: str, devices: list[dict[str, Any]], *, seconds: float, batch: int
) -> tuple[int, list[float], int]:
    """Each device sends back-to-back batches; return (readings accepted, latencies, refusals)."""
    accepted, refused, latencies = 0, 0, []
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=len(devices))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def device_loop(index: int, device: dict[str, Any]) -> None:
            nonlocal accepted, refused
            headers = {
                "Authorization": f"Bearer {device['token']}",
                "content-type": "application/json",
            }
            n = 0
            while time.perf_counter() < deadline:
                readings = [
                    {
                        "timestamp": (start + dt.timedelta(milliseconds=n + i)).isoformat(),
                        "measurements": {"heart_rate": 60 + (n + i) % 40, "spo2": 97},
                    }
                    for i in range(batch)
                ]
                n += batch
                body = orjson.dumps({"readings": readings} if batch > 1 else readings[0])
                sent = time.perf_counter()
                response = await client.post(
                    f"/api/v1/devices/{device['id']}/data", content=body, headers=headers
                )
                if response.status_code == 201:
                    latencies.append(time.perf_counter() - sent)
                    accepted += response.json()["stored"]
                else:
                    refused += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "0.1")))
            del index

        await asyncio.gather(*(device_loop(i, d) for i, d in enumerate(devices)))
    return accepted, latencies, refused


async def copy_baseline(dsn: str, rows: int) -> float:
    """COPY `rows` two-measurement readings into a plain table shaped like `reading`; rows/s."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE bench_copy (id bigserial, organisation_id varchar(36), "
            "device_id varchar(36), patient_id varchar(64), type varchar(40), value float8, "
            "unit varchar(20), ts timestamptz, received_at timestamptz, clock_drift bool, "
            "UNIQUE (device_id, type, ts))"
        )
        now = dt.datetime.now(dt.UTC)
        device = str(uuid.uuid4())
        records = [
            (
                "o",
                device,
                None,
                "heart_rate",
                70.0,
                "/min",
                now + dt.timedelta(milliseconds=i),
                now,
                False,
            )
            for i in range(rows)
        ]
        columns = [
            "organisation_id",
            "device_id",
            "patient_id",
            "type",
            "value",
            "unit",
            "ts",
            "received_at",
            "clock_drift",
        ]
        started = time.perf_counter()
        for offset in range(0, rows, 5000):
            await connection.copy_records_to_table(
                "bench_copy", records=records[offset : offset + 5000], columns=columns
            )
        return rows / (time.perf_counter() - started)
    finally:
        await connection.execute("DROP TABLE IF EXISTS bench_copy")
        await connection.close()


async def stored_rows(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM reading"))
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=500, help="readings per request")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"medcloud_bench_{uuid.uuid4().hex[:8]}"
    server_dsn = args.postgres.rsplit("/", 1)[0]
    dsn = f"{server_dsn}/{name}"

    async def create(sql: str) -> None:
        connection = await asyncpg.connect(args.postgres)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(create(f'CREATE DATABASE "{name}"'))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as var:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCLOUD_")}
        env |= {
            "MEDCLOUD_VAR_DIR": var,
            "MEDCLOUD_LOG_LEVEL": "WARNING",
            "MEDCLOUD_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://"),
            "MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL": ADMIN[0],
            "MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1],
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "medcloud.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)

            async def setup() -> list[dict[str, Any]]:
                async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                    return await fleet(client, args.devices)

            devices = asyncio.run(setup())
            process = psutil.Process(server.pid)
            cpu_before = sum(process.cpu_times()[:2])
            peak = 0.0
            sampling = True

            async def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, process.memory_info().rss / 1024 / 1024)
                    await asyncio.sleep(0.2)

            async def run() -> tuple[int, list[float], int, float]:
                nonlocal sampling
                sampler = asyncio.create_task(sample())
                started = time.perf_counter()
                result = await drive(base, devices, seconds=args.seconds, batch=args.batch)
                elapsed = time.perf_counter() - started
                sampling = False
                await sampler
                return (*result, elapsed)

            accepted, latencies, refused, elapsed = asyncio.run(run())
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            stored = asyncio.run(stored_rows(dsn))
            baseline = asyncio.run(copy_baseline(dsn, max(stored, 10_000)))
        finally:
            server.terminate()
            server.wait(timeout=30)
            asyncio.run(create(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    latencies.sort()
    result = {
        "benchmark": "ingest",
        "transport": "http",
        "devices": args.devices,
        "batch": args.batch,
        "seconds": round(elapsed, 1),
        "readings_per_s_accepted": round(accepted / elapsed),
        "readings_per_s_stored": round(stored / elapsed),
        "requests_per_s": round(len(latencies) / elapsed),
        "refused_requests": refused,
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1)
        if latencies
        else None,
        "server_cpu_seconds": round(cpu, 1),
        "server_cpu_share": round(cpu / elapsed, 2),
        "server_peak_rss_mb": round(peak, 1),
        "copy_baseline_rows_per_s": round(baseline),
        "share_of_copy": round(stored / elapsed / baseline, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
