"""Stream readings through the split topology while its broker, its database and its processes
are killed, then reconcile: was every acknowledged reading stored once, and every alarm raised?

    medcloud bench chaos --readings 100000 --rabbitmq-kills 5 --postgres-kills 2 --process-kills 5

(`.venv/bin/python -m bench.chaos …` is the same.) The run starts a PostgreSQL, a RabbitMQ and a
Mosquitto of its own (temporary directories, free ports; the machine's services are never
touched, Redis apart, under a key prefix of the run's own), runs `medcloud split up` on them
with two ingest APIs behind nginx, and registers monitors, half sending over HTTP through nginx
and half over MQTT. Each sends 1 Hz vitals (4 readings a second) every `--interval` seconds,
with abnormal heart-rate episodes now and then (`bench.alarms`' monitors), and, like a real
device, sends a batch again until it is acknowledged: a 201 over HTTP, the worker's "stored"
answer over MQTT (both sent only after commit).

Meanwhile, at even steps of the readings sent, it SIGKILLs RabbitMQ or PostgreSQL (with every
process of theirs) and starts them again on the same data after `--down-seconds`, or SIGKILLs
one of medcloud's processes (in turn: an ingest API, the ingest worker, the analytics worker,
the notifications worker, the devices API) and starts it again, as an orchestrator would. A
medcloud process that exits on its own is started again too, and counted.

Prints one JSON object: `sent`, `acknowledged`, `stored`, `lost` (acknowledged but not stored),
`duplicated` (stored more than once), `alarms_expected` (acknowledged episodes),
`alarms_raised` (episodes with an alarm), `kills`, and more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import orjson

from bench.alarms import HEART_RATE_RULES, Drive, Episode, Monitor, list_alarms, match
from bench.deployment import ADMIN, free_port, register_monitors
from bench.instances import Mosquitto, Postgres, RabbitMQ, missing_binaries
from medcloud.gateway import topology
from medcloud.platform.mqtt import ack_topic, properties, telemetry_topic

READINGS_PER_INSTANT = 4
"""Heart rate, SpO2, respiratory rate, temperature."""
PROCESS_VICTIMS = (
    "ingest-api",
    "ingest-worker",
    "analytics-worker",
    "notifications-worker",
    "devices-api",
)
START_ATTEMPTS = 3
"""Starts of a killed server before the run gives up."""
Key = tuple[str, str, dt.datetime]
"""A reading: device, type, measurement time."""


@dataclass
class Ledger:
    """What the devices sent and were told, by reading."""

    target: int
    sent: set[Key] = field(default_factory=set)
    acknowledged: set[Key] = field(default_factory=set)
    episodes: list[Episode] = field(default_factory=list)
    drive: Drive = field(default_factory=Drive)
    """Where the monitors count their abnormal readings."""
    attempts: int = 0
    retries: int = 0
    refused: list[str] = field(default_factory=list)
    """Answers that were neither acceptance nor "try again": each would be a reading dropped."""

    @property
    def done(self) -> bool:
        return len(self.sent) >= self.target


@dataclass
class Batch:
    """One request's or message's readings, kept until acknowledged."""

    body: bytes
    keys: list[Key]
    episodes: list[Episode]


class Source:
    """A monitor's next batch: the seconds since its last one, up to now."""

    def __init__(self, monitor: Monitor, ledger: Ledger, interval: int) -> None:
        self.monitor = monitor
        self.ledger = ledger
        self.interval = interval
        self.sent_up_to: dt.datetime | None = None

    def next(self) -> Batch | None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        first = now - dt.timedelta(seconds=self.interval - 1)
        if self.sent_up_to is not None:
            first = self.sent_up_to + dt.timedelta(seconds=1)
        if first > now:
            return None
        device = str(self.monitor.device["id"])
        readings, keys, episodes = [], [], []
        at = first
        while at <= now:
            reading, episode = self.monitor.instant(at, self.ledger.drive)
            readings.append(reading)
            keys += [(device, kind, at) for kind in reading["measurements"]]
            if episode is not None:
                episodes.append(episode)
            at += dt.timedelta(seconds=1)
        self.sent_up_to = now
        self.ledger.sent.update(keys)
        return Batch(orjson.dumps({"readings": readings}), keys, episodes)


def acknowledged(ledger: Ledger, batch: Batch) -> None:
    ledger.acknowledged.update(batch.keys)
    ledger.episodes += batch.episodes


async def http_device(source: Source, base: str, *, stop: asyncio.Event) -> None:
    """Send batches through the gateway, each again until a 201, until the run has enough."""
    device = source.monitor.device
    headers = {"Authorization": f"Bearer {device['token']}", "Content-Type": "application/json"}
    path = f"/api/v1/devices/{device['id']}/data"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            batch = source.next()
            if batch is None:
                await asyncio.sleep(source.interval)
                continue
            while True:
                source.ledger.attempts += 1
                wait = 1.0
                try:
                    answer = await client.post(path, content=batch.body, headers=headers)
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 201:
                    acknowledged(source.ledger, batch)
                    break
                if answer is not None and answer.status_code not in (429, 502, 503, 504):
                    source.ledger.refused.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    break
                if answer is not None:
                    wait = min(5.0, float(answer.headers.get("retry-after", "1")))
                source.ledger.retries += 1
                await asyncio.sleep(wait)
            await asyncio.sleep(source.interval)


async def mqtt_device(
    source: Source, port: int, *, stop: asyncio.Event, ack_timeout: float
) -> None:
    """Publish batches at QoS 1, each again until the worker answers "stored"."""
    device = source.monitor.device
    device_id = str(device["id"])
    answers: dict[bytes, dict[str, Any]] = {}
    heard = asyncio.Event()
    batch: Batch | None = None
    sequence = itertools.count()
    while not stop.is_set() or batch is not None:
        try:
            async with aiomqtt.Client(
                "127.0.0.1",
                port,
                username=device_id,
                password=str(device["token"]),
                identifier=f"chaos-{device_id}",
                protocol=aiomqtt.ProtocolVersion.V5,
            ) as client:
                await client.subscribe(ack_topic(device_id), qos=1)
                listener = asyncio.create_task(_listen(client, answers, heard))
                try:
                    while not stop.is_set() or batch is not None:
                        batch = batch or source.next()
                        if batch is None:
                            await asyncio.sleep(source.interval)
                            continue
                        key = str(next(sequence)).encode()
                        publish = properties("PUBLISH")
                        publish.CorrelationData = key
                        source.ledger.attempts += 1
                        await client.publish(
                            telemetry_topic(device_id), batch.body, qos=1, properties=publish
                        )
                        answer = await _answer(answers, heard, key, ack_timeout)
                        if answer is not None and answer.get("status") == "stored":
                            acknowledged(source.ledger, batch)
                            batch = None
                            await asyncio.sleep(source.interval)
                        elif answer is not None and answer.get("status") == "refused":
                            source.ledger.refused.append(f"MQTT: {answer}")
                            batch = None
                        else:
                            source.ledger.retries += 1
                finally:
                    listener.cancel()
                    # Not suppressing CancelledError: this task's own cancellation must end it.
                    await asyncio.gather(listener, return_exceptions=True)
        except aiomqtt.MqttError:
            source.ledger.retries += 1
            await asyncio.sleep(1)


async def _listen(
    client: aiomqtt.Client, answers: dict[bytes, dict[str, Any]], heard: asyncio.Event
) -> None:
    async for message in client.messages:
        key = getattr(message.properties, "CorrelationData", None)
        if key is not None:
            answers[bytes(key)] = orjson.loads(bytes(message.payload))
            heard.set()


async def _answer(
    answers: dict[bytes, dict[str, Any]], heard: asyncio.Event, key: bytes, timeout: float
) -> dict[str, Any] | None:
    deadline = asyncio.get_running_loop().time() + timeout
    while key not in answers:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        heard.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heard.wait(), remaining)
    return answers.pop(key)


@dataclass
class Chaos:
    """The run's own services and the split topology on them."""

    directory: Path
    postgres: Postgres
    rabbitmq: RabbitMQ
    mosquitto: Mosquitto
    environ: dict[str, str]
    state: topology.State
    kills: dict[str, int] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)
    failed_starts: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def kill(self, kind: str, victim: str | None, down_seconds: float) -> None:
        """SIGKILL what `kind` names and start it again."""
        began = time.monotonic()
        if kind in ("rabbitmq", "postgres"):
            instance = self.rabbitmq if kind == "rabbitmq" else self.postgres
            instance.group.crash()
            time.sleep(down_seconds)
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    instance.start()
                    break
                except RuntimeError as exc:
                    # As an orchestrator would: a server that did not come back is started
                    # again; the failure is reported with the run's figures.
                    self.failed_starts.append(f"{kind} (attempt {attempt}): {exc}"[:2000])
                    instance.group.crash()
                    if attempt == START_ATTEMPTS:
                        raise
        else:
            process = next(p for p in self.state.processes if p.name.startswith(victim or "?"))
            os.kill(process.pid, signal.SIGKILL)
            time.sleep(down_seconds)
            topology.restart(self.state, process.name, environ=self.environ)
            victim = process.name
        self.kills[kind] = self.kills.get(kind, 0) + 1
        self.timeline.append(
            {"kill": kind, "victim": victim, "back_after_s": round(time.monotonic() - began, 1)}
        )

    def supervise(self) -> None:
        """Start again any medcloud process that exited on its own, as an orchestrator would."""
        for process in list(self.state.processes):
            if process.args and not topology.running(process):
                self.unexpected_exits.append(process.name)
                topology.restart(self.state, process.name, environ=self.environ)


def schedule(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """The kills in the order they come: the kinds interleaved, processes taken in turn."""
    lanes = [
        ["rabbitmq"] * args.rabbitmq_kills,
        ["postgres"] * args.postgres_kills,
        ["process"] * args.process_kills,
    ]
    kinds = [kind for group in itertools.zip_longest(*lanes) for kind in group if kind]
    victims = itertools.cycle(PROCESS_VICTIMS)
    return [(kind, next(victims) if kind == "process" else None) for kind in kinds]


async def killer(
    chaos: Chaos, ledger: Ledger, plan: Sequence[tuple[str, str | None]], down: float
) -> None:
    """Kill at even steps of the readings sent; between kills, restart what exited."""
    for index, (kind, victim) in enumerate(plan):
        threshold = ledger.target * (index + 1) / (len(plan) + 1)
        while len(ledger.sent) < threshold:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(chaos.supervise)
        await asyncio.to_thread(chaos.kill, kind, victim, down)
    while not ledger.done:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(chaos.supervise)


async def stored_keys(dsn: str) -> tuple[set[Key], int]:
    """Every reading in the database, and how many rows hold them."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT s.device_id, s.type, r.timestamp FROM reading r "
            "JOIN reading_series s ON s.id = r.series_id"
        )
    finally:
        await connection.close()
    keys = {(row[0], row[1], row[2].astimezone(dt.UTC)) for row in rows}
    return keys, len(rows)


async def drive(args: argparse.Namespace, chaos: Chaos) -> dict[str, Any]:
    """Register the monitors, stream with kills, wait for the alarms, reconcile."""
    base = chaos.state.base_url
    monitors = await register_monitors(base, args.devices)
    await asyncio.sleep(args.interval)  # assignments older than the first reading
    rng = random.Random(args.seed)
    start_chance = args.abnormal * READINGS_PER_INSTANT / args.episode
    ledger = Ledger(target=args.readings)
    stop = asyncio.Event()
    mqtt_count = round(len(monitors) * args.mqtt_share)
    devices = []
    began = time.monotonic()
    for index, device in enumerate(monitors):
        monitor = Monitor(
            device,
            rng=random.Random(rng.random()),
            episode=args.episode,
            start_chance=start_chance,
        )
        source = Source(monitor, ledger, args.interval)
        if index < mqtt_count:
            devices.append(
                mqtt_device(source, chaos.mosquitto.port, stop=stop, ack_timeout=args.ack_timeout)
            )
        else:
            devices.append(http_device(source, base, stop=stop))

    async def until_enough() -> None:
        while not ledger.done:
            await asyncio.sleep(0.2)
        stop.set()

    await asyncio.gather(
        killer(chaos, ledger, schedule(args), args.down_seconds), until_enough(), *devices
    )
    streamed = time.monotonic() - began

    expected = len(ledger.episodes)
    alarms: list[dict[str, Any]] = []
    settle = time.monotonic() + args.settle
    while time.monotonic() < settle:
        alarms = [a for a in await list_alarms(base) if a["rule"] in HEART_RATE_RULES]
        if len(alarms) >= expected:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(2)
    alarms = [a for a in await list_alarms(base) if a["rule"] in HEART_RATE_RULES]
    raised, duplicated_alarms, unexpected = match(ledger.episodes, alarms)
    keys, rows = await stored_keys(chaos.postgres.dsn)
    ours = keys & ledger.sent
    return {
        "readings_target": args.readings,
        "devices": len(monitors),
        "mqtt_devices": mqtt_count,
        "seconds": round(streamed, 1),
        "sent": len(ledger.sent),
        "acknowledged": len(ledger.acknowledged),
        "stored": len(ours),
        "lost": len(ledger.acknowledged - keys),
        "duplicated": rows - len(keys),
        "stored_unacknowledged": len(ours - ledger.acknowledged),
        "refused": len(ledger.refused),
        "refused_examples": ledger.refused[:3],
        "attempts": ledger.attempts,
        "retries": ledger.retries,
        "abnormal_readings": ledger.drive.abnormal_readings,
        "alarms_expected": expected,
        "alarms_raised": raised,
        "alarms_duplicated": duplicated_alarms,
        "alarms_unexpected": len(unexpected),
        "kills": sum(chaos.kills.values()),
        "kills_by_kind": chaos.kills,
        "unexpected_exits": chaos.unexpected_exits,
        "failed_starts": chaos.failed_starts,
        "timeline": chaos.timeline,
    }


def environment(
    chaos_dir: Path, postgres: Postgres, rabbitmq: RabbitMQ, mqtt: Mosquitto
) -> dict[str, str]:
    """The split topology's settings: the run's own services, Redis under a prefix of its own."""
    tag = f"chaos_{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEDCLOUD_")}
    return env | {
        "MEDCLOUD_DATABASE_URL": postgres.dsn.replace("postgresql://", "postgresql+asyncpg://"),
        "MEDCLOUD_BUS_URL": rabbitmq.url,
        "MEDCLOUD_REDIS_URL": os.environ.get("MEDCLOUD_BENCH_REDIS", "redis://127.0.0.1:6379/0"),
        "MEDCLOUD_REDIS_PREFIX": f"{tag}:",
        "MEDCLOUD_MQTT__URL": mqtt.worker_url,
        "MEDCLOUD_MQTT__ADMIN_USERNAME": mqtt.admin,
        "MEDCLOUD_MQTT__ADMIN_PASSWORD": mqtt.admin_password,
        "MEDCLOUD_VAR_DIR": str(chaos_dir / "var"),
        "MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL": ADMIN[0],
        "MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1],
        "MEDCLOUD_LOG_LEVEL": "WARNING",
        # The run makes far more requests per device than a monitor may.
        "MEDCLOUD_RATE_LIMITS__ENABLED": "false",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the run's services and the split topology, drive it, stop everything."""
    missing = missing_binaries()
    if missing:
        raise SystemExit(f"a chaos run needs {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="medcloud-chaos-") as tmp:
        directory = Path(tmp)
        # PostgreSQL runs as its own user in a directory beneath this one.
        directory.chmod(0o755)
        postgres = Postgres(directory / "postgres")
        rabbitmq = RabbitMQ(directory / "rabbitmq")
        mosquitto = Mosquitto(directory / "mosquitto")
        groups = [postgres.group, rabbitmq.group, mosquitto.group]
        try:
            postgres.init()
            rabbitmq.start()
            mosquitto.start()
            environ = environment(directory, postgres, rabbitmq, mosquitto)
            state = topology.up(
                directory / "split",
                listen=f"127.0.0.1:{free_port()}",
                replicas={"ingest": 2},
                worker_replicas={"ingest": 2},
                environ=environ,
                timeout=240,
            )
            chaos = Chaos(directory, postgres, rabbitmq, mosquitto, environ, state)
            result = asyncio.run(drive(args, chaos))
        finally:
            if args.logs and (directory / "split" / "logs").exists():
                shutil.copytree(directory / "split" / "logs", args.logs, dirs_exist_ok=True)
            topology.down(directory / "split")
            for group in reversed(groups):
                with contextlib.suppress(Exception):
                    group.stop()
        result["leftover_pids"] = [pid for group in groups for pid in group.leftovers()]
    return result


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="medcloud bench chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--mqtt-share", type=float, default=0.5, help="devices on MQTT")
    parser.add_argument("--interval", type=int, default=2, help="seconds of readings per send")
    parser.add_argument("--abnormal", type=float, default=0.01, help="share of abnormal readings")
    parser.add_argument("--episode", type=int, default=4, help="seconds an episode lasts")
    parser.add_argument("--rabbitmq-kills", type=int, default=5)
    parser.add_argument("--postgres-kills", type=int, default=2)
    parser.add_argument("--process-kills", type=int, default=5)
    parser.add_argument("--down-seconds", type=float, default=2.0)
    parser.add_argument("--ack-timeout", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=120, help="longest wait for late alarms")
    parser.add_argument("--logs", help="copy the topology's logs into this directory")
    parser.add_argument("--seed", type=int, default=11)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    result = run(parse(argv))
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
