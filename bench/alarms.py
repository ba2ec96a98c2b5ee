"""Drive bedside monitors with about 1 % abnormal readings through the alarm path; measure the
latency from a reading's acceptance to its alarm, and check that every expected alarm is raised
exactly once.

    medcloud bench alarms --deployment services --rate 5000 --seconds 60
    medcloud bench alarms --deployment embedded --rate 5000 --seconds 60

(`.venv/bin/python -m bench.alarms …` is the same.) Each run starts a deployment of its own and
stops it afterwards: `services` is `medcloud serve` on a new PostgreSQL database, an exchange and
queues of its own on RabbitMQ and a Redis key prefix of its own; `embedded` is `medcloud serve`
on a SQLite file with the in-process bus.

Every patient has one monitor sending heart rate, SpO2, respiratory rate and temperature at
1 Hz, `--interval` seconds of them per request (a monitor that buffers). Now and then a
monitor's heart rate goes to 135 or 32 for `--episode` seconds and back to about 75: each such
episode must raise exactly one alarm under the default rule (< 40 or > 120, no delay, 5 bpm
hysteresis), which resolves when the episode ends.

Latency runs from the acceptance of the reading that raised an alarm (the 201 for the request
that carried it) to the alarm. On `services` the benchmark binds its own queue to the exchange
and times each `alert.raised` to its arrival: stored, committed, relayed and delivered
(`from_receipt_latency_p99_ms` starts instead when the server received that request, before the
reading was written). On `embedded` (no broker to listen on) it runs to the alarm's `raised_at`:
stored; the in-process relay publishes on commit.

Prints one JSON object: readings_per_s, alarm_latency_p50_ms, alarm_latency_p99_ms,
alarms_expected, alarms_raised, alarms_duplicated, and more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import orjson
import psutil

from bench import http_load
from bench.deployment import (
    Usage,
    admin_headers,
    free_port,
    fresh_database,
    medcloud,
    medcloud_env,
    process,
    register_monitors,
    wait_ready,
)
from bench.figures import percentile_ms

HEART_RATE_RULES = ("heart_rate_high", "heart_rate_low")
NORMAL = {"spo2": 97.0, "respiratory_rate": 16.0, "temperature": 36.9}


@dataclass
class Episode:
    """A run of abnormal heart rates on one patient: one alarm is expected for it."""

    patient_id: str
    side: str
    start: dt.datetime
    end: dt.datetime
    alarms: list[str] = field(default_factory=list)


@dataclass
class Drive:
    """What the monitors sent and saw."""

    accepted_readings: int = 0
    refused_requests: int = 0
    requests: int = 0
    episodes: list[Episode] = field(default_factory=list)
    abnormal_readings: int = 0
    accepted_at: dict[tuple[str, dt.datetime], float] = field(default_factory=dict)
    """When (wall clock) the 201 for each abnormal reading came back, by patient and time."""


class Monitor:
    """One patient's monitor: 1 Hz vitals, sometimes an episode, sent in buffered requests."""

    def __init__(
        self, device: dict[str, Any], *, rng: random.Random, episode: int, start_chance: float
    ) -> None:
        self.device = device
        self._rng = rng
        self._episode = episode
        self._start_chance = start_chance
        self._left = 0
        self._cooldown = 0
        self._side = "high"

    def instant(self, at: dt.datetime, drive: Drive) -> tuple[dict[str, Any], Episode | None]:
        """Return the next second's reading, and the episode it starts (if any)."""
        started = None
        if self._left == 0 and self._cooldown == 0 and self._rng.random() < self._start_chance:
            self._left, self._side = self._episode, self._rng.choice(("high", "low"))
            end = at + dt.timedelta(seconds=self._episode - 1)
            started = Episode(self.device["patient_id"], self._side, at, end)
        if self._left > 0:
            heart_rate = 135.0 if self._side == "high" else 32.0
            self._left -= 1
            # The next episode starts well after this one has resolved.
            self._cooldown = 10 if self._left == 0 else 0
            drive.abnormal_readings += 1
        else:
            heart_rate = round(self._rng.gauss(75, 5), 1)
            heart_rate = min(max(heart_rate, 55.0), 100.0)
            self._cooldown = max(0, self._cooldown - 1)
        reading = {
            "timestamp": at.isoformat(),
            "measurements": {"heart_rate": heart_rate, **NORMAL},
        }
        return reading, started


async def run_monitor(
    monitor: Monitor,
    base: str,
    *,
    interval: int,
    deadline: float,
    offset: float,
    drive: Drive,
) -> None:
    """Send `interval` seconds of readings every `interval` seconds until the deadline."""
    split = urlsplit(base)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    await asyncio.sleep(offset)
    connection = await http_load.Connection.open(host, port)
    head = http_load.request_head(host, port, monitor.device["id"], monitor.device["token"])
    clock = time.perf_counter()
    sent_up_to: dt.datetime | None = None
    try:
        while time.perf_counter() < deadline:
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            # Every second once: the seconds since the last request, up to this one.
            first = now - dt.timedelta(seconds=interval - 1)
            if sent_up_to is not None:
                first = sent_up_to + dt.timedelta(seconds=1)
            readings, started, abnormal = [], [], []
            at = first
            while at <= now:
                before = drive.abnormal_readings
                reading, episode = monitor.instant(at, drive)
                if drive.abnormal_readings > before:
                    abnormal.append(at)
                readings.append(reading)
                if episode is not None:
                    started.append(episode)
                at += dt.timedelta(seconds=1)
            if not readings:
                clock += 1
                await asyncio.sleep(max(0.0, clock - time.perf_counter()))
                continue
            sent_up_to = now
            body = orjson.dumps({"readings": readings})
            status, retry_after, payload = 0, 0.0, b""
            # A monitor keeps what the server refused (backpressure: 503 with Retry-After) and
            # sends it again, as a real one must: an episode is never lost to a busy server.
            while status != 201 and time.perf_counter() < deadline + interval:
                if status:
                    drive.refused_requests += 1
                    await asyncio.sleep(retry_after)
                try:
                    status, headers, payload = await connection.post(head, body)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # The server closes a connection idle for its keep-alive timeout (uvicorn:
                    # 5 s), which a monitor sending every few seconds can race: reconnect.
                    connection = await http_load.Connection.open(host, port)
                    status, headers, payload = await connection.post(head, body)
                retry_after = float(headers.get(b"retry-after", b"0.2"))
                drive.requests += 1
            if status == 201:
                accepted = time.time()
                drive.accepted_readings += orjson.loads(payload)["stored"]
                drive.episodes += started
                for at in abnormal:
                    drive.accepted_at[(monitor.device["patient_id"], at)] = accepted
            clock += interval
            await asyncio.sleep(max(0.0, clock - time.perf_counter()))
    finally:
        await connection.close()


async def list_alarms(base: str) -> list[dict[str, Any]]:
    """Every alarm of the deployment, through the API."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        headers = await admin_headers(client)
        alarms: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
            page = await client.get("/api/v1/alerts", params=params, headers=headers)
            page.raise_for_status()
            alarms += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return alarms


@contextlib.asynccontextmanager
async def listen(amqp: str, exchange: str) -> AsyncIterator[list[tuple[float, dict[str, Any]]]]:
    """Collect (arrival time, envelope) of every alert.raised published on the exchange."""
    arrivals: list[tuple[float, dict[str, Any]]] = []
    connection = await aio_pika.connect_robust(amqp)
    try:
        channel = await connection.channel()
        # The server declared it (with its alternate exchange): look it up, do not redeclare.
        declared = await channel.get_exchange(exchange)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(declared, routing_key="alert.raised")

        async def arrived(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrivals.append((time.time(), orjson.loads(message.body)))
            await message.ack()

        await queue.consume(arrived)
        yield arrivals
    finally:
        await connection.close()


def match(
    episodes: Sequence[Episode], alarms: Sequence[dict[str, Any]]
) -> tuple[int, int, list[dict[str, Any]]]:
    """Pair alarms with episodes; return (episodes with an alarm, duplicates, unexpected)."""
    by_patient: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        by_patient[episode.patient_id].append(episode)
    unexpected: list[dict[str, Any]] = []
    for alarm in alarms:
        at = dt.datetime.fromisoformat(alarm["reading_timestamp"])
        side = alarm["rule"].rsplit("_", 1)[1]
        found = next(
            (
                e
                for e in by_patient.get(alarm["patient_id"], ())
                if e.side == side and e.start <= at <= e.end
            ),
            None,
        )
        if found is None:
            unexpected.append(alarm)
        else:
            found.alarms.append(alarm["id"])
    raised = sum(1 for e in episodes if e.alarms)
    duplicated = sum(len(e.alarms) - 1 for e in episodes if len(e.alarms) > 1)
    return raised, duplicated, unexpected


async def measure(args: argparse.Namespace, started: Deployment) -> dict[str, Any]:
    """Register the monitors, drive them, wait for the alarms, and report."""
    base, exchange = started.base, started.exchange
    monitors = await register_monitors(base, args.patients)
    # Readings taken before a monitor was assigned belong to nobody: start once every
    # assignment is older than the first request's oldest reading.
    await asyncio.sleep(args.interval)
    rng = random.Random(args.seed)
    # An episode makes `episode` abnormal heart rates out of 4 readings a second per patient.
    start_chance = args.abnormal * len(http_load.MEASUREMENTS) / args.episode
    fleet = [
        Monitor(
            device, rng=random.Random(rng.random()), episode=args.episode, start_chance=start_chance
        )
        for device in monitors
    ]
    drive = Drive()
    async with contextlib.AsyncExitStack() as stack:
        arrivals = None
        if exchange is not None:
            arrivals = await stack.enter_async_context(listen(args.amqp, exchange))
        async with Usage([psutil.Process(pid) for pid in started.pids]) as usage:
            began = time.perf_counter()
            deadline = began + args.seconds
            await asyncio.gather(
                *(
                    run_monitor(
                        monitor,
                        base,
                        interval=args.interval,
                        deadline=deadline,
                        offset=args.interval * i / len(fleet),
                        drive=drive,
                    )
                    for i, monitor in enumerate(fleet)
                )
            )
            # Monitors send nothing after the deadline; the last one's sleep past it is no load.
            elapsed = min(time.perf_counter() - began, args.seconds)
        expected = len(drive.episodes)
        settle = time.perf_counter() + args.settle
        alarms: list[dict[str, Any]] = []
        while time.perf_counter() < settle:
            alarms = [
                a for a in await list_alarms(started.alarms_base) if a["rule"] in HEART_RATE_RULES
            ]
            if len(alarms) >= expected:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(1)
        alarms = [
            a for a in await list_alarms(started.alarms_base) if a["rule"] in HEART_RATE_RULES
        ]
    raised, duplicated, unexpected = match(drive.episodes, alarms)
    # Latency runs from the 201 that accepted the reading which raised the alarm; the same
    # from the server's receipt of that request is reported beside it.
    stored: list[float] = []
    published: list[float] = []
    from_receipt: list[float] = []
    timeline: list[tuple[float, float]] = []
    for alarm in alarms:
        key = (alarm["patient_id"], dt.datetime.fromisoformat(alarm["reading_timestamp"]))
        if key in drive.accepted_at:
            raised_at = dt.datetime.fromisoformat(alarm["raised_at"]).timestamp()
            stored.append(raised_at - drive.accepted_at[key])
    for arrived_at, envelope in arrivals or []:
        payload = envelope["payload"]
        if payload["rule"] not in HEART_RATE_RULES:
            continue
        key = (payload["patient_id"], dt.datetime.fromisoformat(payload["reading_timestamp"]))
        if key in drive.accepted_at:
            published.append(arrived_at - drive.accepted_at[key])
            timeline.append((arrived_at, arrived_at - drive.accepted_at[key]))
        received = dt.datetime.fromisoformat(payload["received_at"]).timestamp()
        from_receipt.append(arrived_at - received)
    latencies = published if exchange is not None else stored
    if args.timeline:
        Path(args.timeline).write_text(
            "".join(f"{at:.3f} {latency * 1000:.1f}\n" for at, latency in sorted(timeline))
        )
    return {
        "deployment": args.deployment,
        "split": args.split,
        "patients": args.patients,
        "seconds": round(elapsed, 1),
        "readings_per_s": round(drive.accepted_readings / elapsed),
        "target_readings_per_s": args.patients * len(http_load.MEASUREMENTS),
        "abnormal_share": round(drive.abnormal_readings / max(1, drive.accepted_readings), 4),
        "alarm_latency_p50_ms": percentile_ms(latencies, 0.50),
        "alarm_latency_p99_ms": percentile_ms(latencies, 0.99),
        "alarm_latency_max_ms": percentile_ms(latencies, 1.0),
        "latency_measured": "accepted→published (arrival on the exchange)"
        if exchange is not None
        else "accepted→stored",
        "stored_latency_p99_ms": percentile_ms(stored, 0.99),
        "from_receipt_latency_p99_ms": percentile_ms(from_receipt, 0.99),
        "alarms_timed": len(latencies),
        "alarms_expected": expected,
        "alarms_raised": raised,
        "alarms_duplicated": duplicated,
        "alarms_unexpected": len(unexpected),
        "unexpected_examples": [
            {k: a[k] for k in ("patient_id", "rule", "value", "reading_timestamp", "raised_at")}
            for a in unexpected[:3]
        ],
        "refused_requests": drive.refused_requests,
        "requests": drive.requests,
        "server_cpu_cores": round(usage.cpu_seconds / elapsed, 2),
        "server_peak_rss_mb": round(usage.peak_rss_mb),
    }


@dataclass
class Deployment:
    """Where a started deployment answers, its server processes, and its exchange."""

    base: str
    alarms_base: str
    pids: list[int]
    exchange: str | None


@contextlib.contextmanager
def deployment(args: argparse.Namespace) -> Iterator[Deployment]:
    """Start the deployment the arguments name."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        var = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        exchange = None
        if args.deployment == "services":
            dsn = stack.enter_context(fresh_database(args.postgres))
            tag = f"bench_{uuid.uuid4().hex[:8]}"
            exchange = f"{tag}.x"
            env = medcloud_env(
                var / "var",
                dsn,
                MEDCLOUD_BUS_URL=args.amqp,
                MEDCLOUD_BUS__EXCHANGE=exchange,
                MEDCLOUD_BUS__QUEUE_PREFIX=tag,
                MEDCLOUD_REDIS_URL=args.redis,
                MEDCLOUD_REDIS_PREFIX=f"{tag}:",
            )
            stack.callback(_delete_queues, args.amqp, tag, exchange)
        else:
            env = medcloud_env(var / "var", "")
            env.pop("MEDCLOUD_DATABASE_URL")
        env |= dict(args.env or [])
        alarms_base = base
        if args.split:
            # As the reference design deploys it: an API service that only answers requests,
            # a worker for the consumers of its contexts, and analytics (its consumers, relay,
            # advisory loop and the alarm routes) as a service of its own. Relays wake on
            # PostgreSQL notifications, so the API's commits are relayed by the others at once.
            analytics_port = free_port()
            alarms_base = f"http://127.0.0.1:{analytics_port}"
            front = medcloud(
                "serve", "--port", str(port), "--contexts", args.front_contexts, "--no-workers"
            )
            worker = medcloud("worker", "--contexts", args.worker_contexts)
            analytics = medcloud(
                "serve", "--port", str(analytics_port), "--contexts", "identity,analytics"
            )
            server = stack.enter_context(process(front, env, var / "serve.log"))
            wait_ready(base)
            pids = [server.pid]
            for args_, log in ((worker, "worker.log"), (analytics, "analytics.log")):
                pids.append(stack.enter_context(process(args_, env, var / log)).pid)
        else:
            server = stack.enter_context(
                process(medcloud("serve", "--port", str(port)), env, var / "serve.log")
            )
            pids = [server.pid]
        wait_ready(base)
        wait_ready(alarms_base)
        try:
            yield Deployment(base, alarms_base, pids, exchange)
            if args.logs:
                for path in var.glob("*.log"):
                    shutil.copy(path, Path(args.logs) / path.name)
        except BaseException:
            # The run's directory goes with it: show why the server stopped answering.
            for path in sorted(var.glob("*.log")):
                lines = path.read_text(errors="replace").splitlines()[-30:]
                print(f"--- {path.name}", *lines, sep="\n", file=sys.stderr)
            raise


def _delete_queues(amqp: str, tag: str, exchange: str) -> None:
    from medcloud.bootstrap import load_contexts

    queues = [f"{exchange}.unrouted"]
    for context in load_contexts():
        for subscription in context.subscriptions:
            queue = f"{tag}.{context.name}.{subscription.handler.__name__}"
            queues += [queue, f"{queue}.retry", f"{queue}.dlq"]

    async def run() -> None:
        connection = await aio_pika.connect_robust(amqp)
        try:
            channel = await connection.channel()
            for name in queues:
                await channel.queue_delete(name)
            for name in (exchange, f"{exchange}.unrouted"):
                await channel.exchange_delete(name)
        finally:
            await connection.close()

    asyncio.run(run())


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """The services a deployment runs on, and extra settings: every deploying bench takes them."""
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--env", nargs=2, action="append", metavar=("NAME", "VALUE"), help="an extra setting"
    )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="medcloud bench alarms",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--deployment", choices=["embedded", "services"], default="services")
    parser.add_argument(
        "--rate", type=int, default=5000, help="readings per second (4 per patient per second)"
    )
    parser.add_argument("--patients", type=int, help="default: rate / 4")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=int, default=5, help="seconds of readings per request")
    parser.add_argument("--abnormal", type=float, default=0.01, help="share of abnormal readings")
    parser.add_argument("--episode", type=int, default=4, help="seconds an episode lasts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeline", help="write each alarm's arrival time and latency here")
    parser.add_argument("--logs", help="copy the deployment's logs into this directory")
    parser.add_argument("--settle", type=float, default=60, help="longest wait for late alarms")
    parser.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="services: run analytics as a service of its own (default on services)",
    )
    parser.add_argument(
        "--front-contexts",
        default="identity,devices,ingest,audit",
        help="with --split: the contexts of the API service devices send to",
    )
    parser.add_argument(
        "--worker-contexts",
        default="devices,ingest,audit",
        help="with --split: the contexts whose consumers the worker runs",
    )
    add_service_options(parser)
    args = parser.parse_args(argv)
    if args.split is None:
        args.split = args.deployment == "services"
    if args.split and args.deployment != "services":
        parser.error(
            "--split needs --deployment services (SQLite and the in-process bus are one process)"
        )
    if args.patients is None:
        args.patients = max(1, args.rate // len(http_load.MEASUREMENTS))
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one benchmark and print its JSON."""
    args = parse(argv)
    with deployment(args) as started:
        result = asyncio.run(measure(args, started))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
