"""Raise alarms at a steady rate and time each one to the email about it, accepted by a real SMTP
server; check that every alarm was mailed exactly once.

    medcloud bench notify --rate 100 --seconds 30
    medcloud bench notify --deployment services --rate 100 --seconds 30

(`.venv/bin/python -m bench.notify …` is the same.) Each run starts a deployment of its own (as
`medcloud bench alarms` does: `embedded` is `medcloud serve` on a SQLite file with the
in-process bus, `services` the same on PostgreSQL, RabbitMQ and Redis) and an SMTP server (the
mailbox the demo uses, aiosmtpd) in this process, which the deployment mails.

One user is on call for the whole organisation, with an email address. Every alarm is a real
one: a monitor of its own patient sends a heart rate of 160 (the default rule raises a high
priority alarm above 120), `--rate` monitors a second. Delivery latency runs from the alarm's
`raised_at` to the SMTP server accepting the message (end of DATA), which the email's
idempotency key ties to its alarm.

Prints one JSON object: alarms, emails_received, delivery_p50_ms, delivery_p99_ms, duplicates,
and more.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psutil

from bench import http_load
from bench.alarms import (
    Deployment,
    add_service_options,
    deployment,
    list_alarms,
)
from bench.deployment import Usage, admin_headers, register_monitors
from bench.figures import percentile_ms
from medcloud.notifications.mailbox import LocalMailbox

ON_CALL_EMAIL = "on-call@bench.example"
CONNECTIONS = 32
"""Connections the monitors' readings share, unless `--connections` says otherwise."""


async def on_call(base: str) -> None:
    """Put the admin on call, organisation-wide, by email for every priority."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        headers = await admin_headers(client)
        me = await client.get("/api/v1/users/me", headers=headers)
        me.raise_for_status()
        user_id = me.json()["id"]
        recipient = await client.put(
            f"/api/v1/notifications/recipients/{user_id}",
            json={"email": ON_CALL_EMAIL, "channels": {"high": ["email"]}},
            headers=headers,
        )
        recipient.raise_for_status()
        now = dt.datetime.now(dt.UTC)
        shift = await client.post(
            "/api/v1/on-call",
            json={
                "user_id": user_id,
                "duty": "primary",
                "starts_at": (now - dt.timedelta(minutes=1)).isoformat(),
                "ends_at": (now + dt.timedelta(hours=6)).isoformat(),
            },
            headers=headers,
        )
        shift.raise_for_status()


async def raise_alarms(
    base: str,
    monitors: list[dict[str, Any]],
    rate: float,
    refused: list[int],
    *,
    connections: int = CONNECTIONS,
) -> float:
    """Send each monitor one abnormal heart rate, `rate` a second; return the seconds taken.

    Over a few keep-alive connections of bench/http_load.py: a client that queues thousands of
    requests in one pool spends more time managing the queue than the server does answering.
    """
    split = urlsplit(base)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    due: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def sender() -> None:
        connection = await http_load.Connection.open(host, port)
        try:
            while (monitor := await due.get()) is not None:
                head = http_load.request_head(host, port, monitor["id"], monitor["token"])
                at = dt.datetime.now(dt.UTC).isoformat()
                body = orjson.dumps({"timestamp": at, "measurements": {"heart_rate": 160}})
                while True:
                    status, headers, payload = await connection.post(head, body)
                    if status == 201:
                        break
                    if status not in (429, 503):
                        raise RuntimeError(f"reading refused: {status} {payload[:200]!r}")
                    # Backpressure: a monitor sends the same reading again when told to.
                    refused.append(1)
                    await asyncio.sleep(float(headers.get(b"retry-after", b"0.2")))
        finally:
            await connection.close()

    senders = [asyncio.create_task(sender()) for _ in range(connections)]
    began = time.perf_counter()
    for i, monitor in enumerate(monitors):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        due.put_nowait(monitor)
    for _ in senders:
        due.put_nowait(None)
    await asyncio.gather(*senders)
    return time.perf_counter() - began


async def measure(args: argparse.Namespace, started: Deployment, mailbox: LocalMailbox) -> Any:
    """Register the monitors, raise the alarms, wait for the emails, and report."""
    count = int(args.rate * args.seconds)
    monitors = await register_monitors(started.base, count)
    await on_call(started.base)
    async with Usage([psutil.Process(pid) for pid in started.pids]) as usage:
        refused: list[int] = []
        elapsed = await raise_alarms(
            started.base, monitors, args.rate, refused, connections=args.connections
        )
        settle = time.perf_counter() + args.settle
        while time.perf_counter() < settle and len(mailbox.messages) < count:
            await asyncio.sleep(0.2)
    await asyncio.sleep(args.quiet)  # anything sent twice arrives now
    alarms = {
        a["id"]: dt.datetime.fromisoformat(a["raised_at"]).timestamp()
        for a in await list_alarms(started.base)
        if a["source"] == "clinical"
    }
    ids = Counter(received.message_id for received in mailbox.messages)
    latencies = []
    first_seen: set[str] = set()
    for received in mailbox.messages:
        alert_id = (received.idempotency_key or "").split(":", 1)[0]
        if alert_id in alarms and alert_id not in first_seen:
            first_seen.add(alert_id)
            latencies.append(received.received_at - alarms[alert_id])
    return {
        "deployment": args.deployment,
        "rate": args.rate,
        "connections": args.connections,
        "seconds": round(elapsed, 1),
        "alarms": len(alarms),
        "emails_received": len(mailbox.messages),
        "alarms_emailed": len(first_seen),
        "duplicates": sum(n - 1 for n in ids.values()),
        "delivery_p50_ms": percentile_ms(latencies, 0.50),
        "delivery_p99_ms": percentile_ms(latencies, 0.99),
        "delivery_max_ms": percentile_ms(latencies, 1.0),
        "latency_measured": "alarm raised_at → accepted by the SMTP server",
        "refused_requests": len(refused),
        "smtp_connections": mailbox.connections,
        "server_cpu_cores": round(usage.cpu_seconds / max(elapsed, 1e-9), 2),
    }


async def run(args: argparse.Namespace) -> Any:
    mailbox = LocalMailbox()
    await mailbox.start()
    try:
        args.env = [
            *(args.env or []),
            ["MEDCLOUD_NOTIFICATIONS__SMTP_HOST", "127.0.0.1"],
            ["MEDCLOUD_NOTIFICATIONS__SMTP_PORT", str(mailbox.port)],
        ]
        # The deployment's start and stop block: run them beside this loop, which serves SMTP.
        context = deployment(args)
        started = await asyncio.to_thread(context.__enter__)
        try:
            return await measure(args, started, mailbox)
        finally:
            await asyncio.to_thread(context.__exit__, None, None, None)
    finally:
        await mailbox.stop()


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="medcloud bench notify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--deployment", choices=["embedded", "services"], default="embedded")
    parser.add_argument("--rate", type=float, default=100, help="alarms raised per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help="HTTP connections the monitors send over (more keep the rate when answers slow)",
    )
    parser.add_argument("--settle", type=float, default=60, help="longest wait for late emails")
    parser.add_argument("--quiet", type=float, default=3, help="wait for repeats after the last")
    add_service_options(parser)
    args = parser.parse_args(argv)
    # What `bench.alarms.deployment` reads: one process, no split.
    args.split, args.logs = False, None
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one benchmark and print its JSON."""
    result: dict[str, Any] = asyncio.run(run(parse(argv)))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
