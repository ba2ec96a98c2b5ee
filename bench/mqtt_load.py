"""MQTT ingest: bedside monitors publishing at QoS 1 to a Mosquitto of the run's own.

The devices (`bench.mqtt_fleet`) log in with the credentials the platform provisioned through
Mosquitto's dynamic security and keep up to `--window` messages each waiting for the platform's
answer, sent only after commit. Stored rows are also counted in PostgreSQL every few seconds, to
show the rate is sustained.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.baseline import copy_rate
from bench.deployment import (
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
from bench.figures import report
from bench.http_load import MEASUREMENTS
from bench.mqtt_fleet import Fleet, instant_body

SAMPLE_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 120.0


async def sample_stored(dsn: str, stop: asyncio.Event, rates: list[float]) -> None:
    """Count stored rows every few seconds; keep each window's rows per second."""
    last, at = await stored_rows(dsn), time.perf_counter()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        now_rows, now = await stored_rows(dsn), time.perf_counter()
        if now - at >= SAMPLE_SECONDS * 0.9:
            rates.append((now_rows - last) / (now - at))
        last, at = now_rows, now


async def measure(
    args: argparse.Namespace, base: str, dsn: str, port: int, pids: Sequence[int]
) -> dict[str, Any]:
    """Register the fleet, drive it over MQTT, count what is stored, take the COPY baseline."""
    identities = await register_fleet(base, args.devices, admin=args.admin)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    probe = orjson.dumps({"timestamp": start - dt.timedelta(hours=1), "measurements": MEASUREMENTS})
    fleet = Fleet(
        port,
        identities,
        body=instant_body(start, MEASUREMENTS, args.instants),
        probe=probe,
        window=args.window,
    )
    rates: list[float] = []
    stop = asyncio.Event()
    try:
        # The fleet runs on a thread of its own; this loop only counts rows meanwhile.
        await asyncio.to_thread(fleet.connect)
        try:
            await asyncio.to_thread(fleet.probe, PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise SystemExit(
                f"the ingest workers did not answer every device within {PROBE_TIMEOUT_SECONDS} s"
            ) from None
        # Nothing is in flight now: every device has had its probe answered.
        before = await stored_rows(dsn)
        fleet.tally.reset()
        async with Usage([psutil.Process(pid) for pid in pids]) as usage:
            sampler = asyncio.create_task(sample_stored(dsn, stop, rates))
            elapsed = await asyncio.to_thread(fleet.drive, args.seconds)
            stop.set()
            await sampler
    finally:
        fleet.close()
    tally = fleet.tally
    stored = await stored_rows(dsn) - before
    return report(
        args,
        elapsed=elapsed,
        accepted=tally.stored,
        stored=stored,
        latencies=tally.latencies,
        extra={
            "readings_per_message": len(MEASUREMENTS) * args.instants,
            "instants_per_message": args.instants,
            "messages_sent": tally.sent,
            "messages_acknowledged": tally.acked,
            "messages_refused": tally.refused,
            "messages_per_s_acknowledged": round(tally.acked / elapsed),
            "window_per_device": args.window,
            "ingest_workers": args.workers,
            "bus": args.bus if args.workers else "inprocess",
            "stored_per_s_each_5s": [round(rate) for rate in rates],
            "stored_per_s_slowest_5s": round(min(rates)) if rates else None,
        },
        usage=usage,
        baseline=await copy_rate(dsn),
    )


def run_own_deployment(args: argparse.Namespace) -> dict[str, Any]:
    """Start a broker, a server and the ingest workers on a new database; measure; stop them."""
    from tests.support.mosquitto import ADMIN, running_broker

    with (
        fresh_database(args.postgres) as dsn,
        tempfile.TemporaryDirectory() as tmp,
        running_broker(Path(tmp) / "broker", persistence=True) as broker,
    ):
        var = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        run = f"medcloud_bench_{uuid.uuid4().hex[:8]}"
        topology = {
            "MEDCLOUD_MQTT__URL": broker.worker_url,
            "MEDCLOUD_MQTT__ADMIN_USERNAME": ADMIN,  # the broker's dynamic-security admin
            "MEDCLOUD_MQTT__ADMIN_PASSWORD": broker.admin_password,
        }
        rabbit = bool(args.workers) and args.bus == "rabbitmq"
        if rabbit:
            # The ingest workers' events reach the consumers (analytics, devices, audit) in the
            # API process through RabbitMQ.
            topology |= {
                "MEDCLOUD_BUS_URL": args.amqp,
                "MEDCLOUD_BUS__EXCHANGE": f"{run}.x",
                "MEDCLOUD_BUS__QUEUE_PREFIX": run,
            }
        # On the in-process bus every process subscribes and runs every context's consumers:
        # each relay claims outbox rows under a lease and applies them in its own process.
        worker = ("worker", "--contexts", "ingest") if rabbit else ("worker",)
        env = medcloud_env(var / "var", dsn, **topology, **dict(args.env or []))
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(
                process(
                    medcloud("serve", "--port", str(port)),
                    env | {"MEDCLOUD_MQTT__SUBSCRIBE": "false" if rabbit else "true"},
                    var / "serve.log",
                )
            )
            wait_ready(base)
            workers = [
                stack.enter_context(
                    process(
                        medcloud(*worker),
                        env | {"MEDCLOUD_MQTT__CLIENT_ID": f"medcloud-ingest-{i}"},
                        var / f"worker-{i}.log",
                    )
                )
                for i in range(args.workers)
            ]
            pids = [server.pid, *(worker.pid for worker in workers)]
            return asyncio.run(measure(args, base, dsn, broker.port, pids))


def run_external(args: argparse.Namespace) -> dict[str, Any]:
    """Drive a running deployment's broker (`--url`, `--mqtt-port`, `--database`, `--pid`)."""
    if not (args.database and args.mqtt_port):
        raise SystemExit("--url with --transport mqtt needs --database and --mqtt-port")
    return asyncio.run(measure(args, args.url, args.database, args.mqtt_port, args.pid or []))
