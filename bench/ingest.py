"""Drive a fleet of devices against a medcloud deployment on PostgreSQL and measure ingest.

    medcloud bench ingest --transport http --devices 20 --seconds 60 --batch 500
    medcloud bench ingest --transport http --devices 50 --seconds 60 --batch 1
    medcloud bench ingest --transport mqtt --devices 200 --seconds 60
    medcloud bench ingest --transport mqtt --devices 100 --seconds 60 --instants 5

(`.venv/bin/python -m bench.ingest …` is the same.) By default each run starts a deployment of
its own — a new PostgreSQL database, `medcloud serve`, and for MQTT a Mosquitto on a free port
that `serve` (and any `--workers`) subscribes to — and stops it afterwards. `--url` drives a
deployment that is already running instead (`--admin`, `--database` and `--pid` tell how to
reach it).

Prints one JSON object: readings/s accepted and stored, p50/p99 latency from send to stored,
CPU and peak memory of the server processes and, from the same run, the rate of a raw
PostgreSQL COPY of the same rows into a table of the same shape. A reading is one measured
value (one row: device, type, timestamp, value); a bedside-monitor message carries four.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench import http_load
from bench.baseline import copy_rate
from bench.deployment import (
    ADMIN,
    Usage,
    free_port,
    fresh_database,
    medcloud,
    medcloud_env,
    process,
    register_fleet,
    stored_rows,
    wait_ready,
)
from bench.figures import percentile_ms, report


async def drive_http(
    base: str, fleet: list[dict[str, Any]], *, seconds: float, batch: int
) -> http_load.Tally:
    """Every device sends back-to-back requests of `batch` readings for `seconds`."""
    split = urlsplit(base)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    tally = http_load.Tally()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    deadline = time.perf_counter() + seconds
    await asyncio.gather(
        *(
            http_load.run_device(
                host, port, device, batch=batch, deadline=deadline, start=start, tally=tally
            )
            for device in fleet
        )
    )
    return tally


async def measure_http(
    args: argparse.Namespace, base: str, dsn: str, pids: Sequence[int]
) -> dict[str, Any]:
    """Register the fleet, drive it, count what is stored, then take the baselines: the COPY
    of the same rows (PostgreSQL) and, for single readings, FastAPI without a database."""
    fleet = await register_fleet(base, args.devices, admin=args.admin)
    before = await stored_rows(dsn)
    async with Usage([psutil.Process(pid) for pid in pids]) as usage:
        started = time.perf_counter()
        tally = await drive_http(base, fleet, seconds=args.seconds, batch=args.batch)
        elapsed = time.perf_counter() - started
    stored = await stored_rows(dsn) - before
    extra: dict[str, Any] = {
        "mode": args.mode,
        "deployment": "postgres" if dsn.startswith("postgresql") else "embedded",
        "readings_per_request": args.batch * len(http_load.MEASUREMENTS),
        "requests_per_s": round(tally.requests / elapsed),
        "refused_requests": tally.refused,
    }
    if args.mode == "single":
        extra |= await bare_api_baseline(fleet, seconds=args.baseline_seconds or args.seconds)
    return report(
        args,
        elapsed=elapsed,
        accepted=tally.stored,
        stored=stored,
        latencies=tally.latencies,
        extra=extra,
        usage=usage,
        baseline=await copy_rate(dsn) if dsn.startswith("postgresql") else None,
    )


async def bare_api_baseline(fleet: list[dict[str, Any]], *, seconds: float) -> dict[str, Any]:
    """Drive `bench.bare_api` (FastAPI and pydantic, no database) with the same fleet, the same
    generator and the same bodies; return its requests/s and latencies as `baseline_*`."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bench.bare_api", "--port", str(port)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        process(command, dict(os.environ), Path(tmp) / "bare.log"),
    ):
        await asyncio.to_thread(wait_ready, base)
        started = time.perf_counter()
        tally = await drive_http(base, fleet, seconds=seconds, batch=1)
        elapsed = time.perf_counter() - started
    return {
        "baseline": "FastAPI + pydantic, no database (bench/bare_api.py)",
        "baseline_requests_per_s": round(tally.requests / elapsed),
        "baseline_p50_ms": percentile_ms(tally.latencies, 0.50),
        "baseline_p99_ms": percentile_ms(tally.latencies, 0.99),
    }


def run_own_deployment(args: argparse.Namespace) -> dict[str, Any]:
    """Start a server on a new database (or SQLite file) for this run, measure it, stop it."""
    with contextlib.ExitStack() as stack:
        var = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "var"
        if args.deployment == "embedded":
            var.mkdir()
            dsn = f"sqlite:///{var / 'medcloud.db'}"
        else:
            dsn = stack.enter_context(fresh_database(args.postgres))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = medcloud_env(var, dsn, **dict(args.env or []))
        server_args = medcloud("serve", "--port", str(port))
        server = stack.enter_context(process(server_args, env, var.parent / "serve.log"))
        wait_ready(base)
        return asyncio.run(measure_http(args, base, dsn, [server.pid]))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="medcloud bench ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--transport", choices=["http", "mqtt"], default="http")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--mode",
        choices=["batch", "single"],
        default="batch",
        help="HTTP: `batch`, --batch instants per request; `single`, one reading object per "
        "request, as most bedside devices send, beside FastAPI without a database",
    )
    parser.add_argument(
        "--batch", type=int, default=500, help="HTTP: readings (instants) per request"
    )
    parser.add_argument(
        "--deployment",
        choices=["postgres", "embedded"],
        default="postgres",
        help="HTTP: `postgres`, a new PostgreSQL database; `embedded`, a SQLite file",
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        help="HTTP single: how long to drive the FastAPI baseline (default: --seconds)",
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the run's database on",
    )
    parser.add_argument("--url", help="drive this running deployment instead of starting one")
    parser.add_argument("--database", help="with --url: the deployment's PostgreSQL DSN")
    parser.add_argument("--pid", type=int, action="append", help="with --url: server pid(s)")
    parser.add_argument(
        "--admin", nargs=2, metavar=("EMAIL", "PASSWORD"), default=ADMIN, help="an admin to sign in"
    )
    parser.add_argument(
        "--env",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="an extra MEDCLOUD_* setting for the deployment this run starts",
    )
    parser.add_argument(
        "--window", type=int, default=8, help="MQTT: messages a device keeps unacknowledged"
    )
    parser.add_argument(
        "--instants",
        type=int,
        default=1,
        help="MQTT: instants (of four readings) per message; a monitor that publishes every "
        "few seconds sends its 1 Hz vitals of those seconds at once",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="MQTT: `medcloud worker` processes subscribing beside `serve` (0: `serve` alone)",
    )
    parser.add_argument(
        "--bus",
        choices=["inprocess", "rabbitmq"],
        default="inprocess",
        help="MQTT with --workers: inprocess, every process runs every context's consumers on "
        "the shared outbox; rabbitmq, the workers run ingest only and RabbitMQ carries events",
    )
    parser.add_argument("--mqtt-port", type=int, help="with --url: the broker's port")
    parser.add_argument(
        "--amqp", default="amqp://guest:guest@127.0.0.1:5672/", help="MQTT: the RabbitMQ to use"
    )
    args = parser.parse_args(argv)
    if args.mode == "single":
        args.batch = 1
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run one benchmark and print its JSON."""
    args = parse(argv)
    if args.url is None and args.transport == "mqtt":
        from bench import mqtt_load

        result = mqtt_load.run_own_deployment(args)
    elif args.url is None:
        result = run_own_deployment(args)
    elif args.transport == "http":
        if not args.database:
            raise SystemExit("--url needs --database to count stored rows and take the baseline")
        result = asyncio.run(measure_http(args, args.url, args.database, args.pid or []))
    else:
        from bench import mqtt_load

        result = mqtt_load.run_external(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
