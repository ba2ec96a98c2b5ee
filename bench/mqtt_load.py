"""MQTT ingest: bedside monitors publishing at QoS 1 to a Mosquitto of the run's own.

Each device is an MQTT v5 client that logs in with its device id and token (provisioned by the
platform through Mosquitto's dynamic security) and keeps up to `--window` messages waiting for
the platform's acknowledgement on `devices/{id}/ack`, which the ingest worker sends only after
the readings are committed. Latency is publish → that acknowledgement, so it is send → stored.
Stored rows are also counted in PostgreSQL every few seconds, to show the rate is sustained.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
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
from bench.http_load import MEASUREMENTS
from medcloud.platform.mqtt import ack_topic, properties, telemetry_topic

ADMIN = "medcloud-admin"

SAMPLE_SECONDS = 5.0


@dataclass
class Tally:
    """What the devices saw."""

    sent: int = 0
    acked: int = 0
    stored: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)


async def run_device(
    port: int,
    device: dict[str, Any],
    *,
    window: int,
    go: asyncio.Event,
    ready: asyncio.Queue[str],
    seconds: float,
    start: dt.datetime,
    tally: Tally,
) -> None:
    """Publish readings back to back, at most `window` unacknowledged, for `seconds`.

    One message is sent and acknowledged first (reported on `ready`): a broker drops what is
    published before the workers' shared subscription exists, so the clock starts only once
    every device has been heard end to end.
    """
    free = asyncio.Semaphore(window)
    sent_at: dict[bytes, float] = {}
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        username=device["id"],
        password=device["token"],
        identifier=f"bench-{device['id']}",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=max(20, window),
    )
    async with client:
        await client.subscribe(ack_topic(device["id"]), qos=1)

        heard = asyncio.Event()

        async def hear() -> None:
            async for message in client.messages:
                key = getattr(message.properties, "CorrelationData", None)
                if key == b"probe":
                    heard.set()
                    continue
                began = sent_at.pop(bytes(key), None) if key else None
                if began is None:
                    continue
                answer = orjson.loads(message.payload)
                tally.acked += 1
                if answer.get("status") == "stored":
                    tally.stored += answer["stored"]
                    tally.latencies.append(time.perf_counter() - began)
                else:
                    tally.refused += 1
                free.release()

        listener = asyncio.create_task(hear())
        topic = telemetry_topic(device["id"])
        base = start.timestamp()
        n = 0

        async def probe() -> None:
            # The same reading each time, stored once, an hour before the timed ones.
            stamp = dt.datetime.fromtimestamp(base - 3600, dt.UTC)
            body = orjson.dumps({"timestamp": stamp, "measurements": MEASUREMENTS})
            publish = properties("PUBLISH")
            publish.CorrelationData = b"probe"
            await client.publish(topic, body, qos=1, properties=publish)

        async def send() -> None:
            nonlocal n
            await free.acquire()
            stamp = dt.datetime.fromtimestamp(base + n * 0.001, dt.UTC)
            body = orjson.dumps({"timestamp": stamp, "measurements": MEASUREMENTS})
            publish = properties("PUBLISH")
            key = str(n).encode()
            publish.CorrelationData = key
            sent_at[key] = time.perf_counter()
            await client.publish(topic, body, qos=1, properties=publish)
            tally.sent += 1
            n += 1

        try:
            # Until the workers' shared subscription exists the broker drops what devices
            # publish (a worker's session holds messages only once it has subscribed).
            while not heard.is_set():
                await probe()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(heard.wait(), 2)
            await ready.put(device["id"])
            await go.wait()
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await send()
            # What was sent is waited for, so every acknowledgement is counted.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    for _ in range(window):
                        await free.acquire()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


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
    from bench.ingest import report

    fleet = await register_fleet(base, args.devices, admin=args.admin)
    tally = Tally()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    rates: list[float] = []
    stop, go = asyncio.Event(), asyncio.Event()
    ready: asyncio.Queue[str] = asyncio.Queue()
    devices = [
        asyncio.create_task(
            run_device(
                port,
                device,
                window=args.window,
                go=go,
                ready=ready,
                seconds=args.seconds,
                start=start,
                tally=tally,
            )
        )
        for device in fleet
    ]
    try:
        async with asyncio.timeout(120):
            for _ in fleet:
                await ready.get()
    except TimeoutError:
        raise SystemExit(
            "the ingest workers did not acknowledge every device within 120 s"
        ) from None
    # Nothing is in flight now: every device waits for `go` with its first message answered.
    before = await stored_rows(dsn)
    tally.sent = tally.acked = tally.stored = tally.refused = 0
    tally.latencies.clear()
    async with Usage([psutil.Process(pid) for pid in pids]) as usage:
        sampler = asyncio.create_task(sample_stored(dsn, stop, rates))
        started = time.perf_counter()
        go.set()
        await asyncio.gather(*devices)
        elapsed = time.perf_counter() - started
        stop.set()
        await sampler
    stored = await stored_rows(dsn) - before
    return report(
        args,
        elapsed=elapsed,
        accepted=tally.stored,
        stored=stored,
        latencies=tally.latencies,
        extra={
            "readings_per_message": len(MEASUREMENTS),
            "messages_sent": tally.sent,
            "messages_acknowledged": tally.acked,
            "messages_refused": tally.refused,
            "messages_per_s_acknowledged": round(tally.acked / elapsed),
            "window_per_device": args.window,
            "ingest_workers": args.workers,
            "stored_per_s_each_5s": [round(rate) for rate in rates],
            "stored_per_s_slowest_5s": round(min(rates)) if rates else None,
        },
        usage=usage,
        baseline=await copy_rate(dsn),
    )


def run_own_deployment(args: argparse.Namespace) -> dict[str, Any]:
    """Start a broker, a server and the ingest workers on a new database; measure; stop them."""
    from tests.support.mosquitto import running_broker

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
            "MEDCLOUD_MQTT__ADMIN_USERNAME": ADMIN,
            "MEDCLOUD_MQTT__ADMIN_PASSWORD": broker.admin_password,
        }
        if args.workers:
            # Separate processes need a real bus: the ingest workers' events reach the
            # consumers (analytics, devices, audit) in the API process through RabbitMQ.
            topology |= {
                "MEDCLOUD_BUS_URL": args.amqp,
                "MEDCLOUD_BUS__EXCHANGE": f"{run}.x",
                "MEDCLOUD_BUS__QUEUE_PREFIX": run,
            }
        env = medcloud_env(var / "var", dsn, **topology, **dict(args.env or []))
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(
                process(
                    medcloud("serve", "--port", str(port)),
                    # With no separate workers the server takes the telemetry itself.
                    env | {"MEDCLOUD_MQTT__SUBSCRIBE": "true" if not args.workers else "false"},
                    var / "serve.log",
                )
            )
            wait_ready(base)
            workers = [
                stack.enter_context(
                    process(
                        medcloud("worker", "--contexts", "ingest"),
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
