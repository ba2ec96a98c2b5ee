"""An HTTP load generator light enough not to be what a benchmark measures.

httpx spends about a millisecond of CPU on each request, which on a two-core machine shared
with the server and PostgreSQL caps single-reading runs at the generator, not at medcloud. This
speaks just enough HTTP/1.1 over one keep-alive connection per device: a pre-formatted request
head, a body, and a response read by its Content-Length.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

MEASUREMENTS = {"heart_rate": 72.0, "spo2": 97.0, "respiratory_rate": 16.0, "temperature": 36.9}
"""What a bedside monitor sends each second: one reading is one of these values."""


@dataclass
class Tally:
    """What the devices saw: readings stored, send→stored latencies, refusals."""

    stored: int = 0
    requests: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, head: bytes, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send a request whose head ends in `Content-Length: ` and read the whole response."""
        self._writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        payload = await self._reader.readexactly(int(headers.get(b"content-length", b"0")))
        return status, headers, payload

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


def request_head(host: str, port: int, device_id: str, token: str) -> bytes:
    """The head of a POST of readings for one device, up to the Content-Length value."""
    return (
        f"POST /api/v1/devices/{device_id}/data HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: "
    ).encode()


def body_maker(batch: int, start: dt.datetime) -> Callable[[int], bytes]:
    """Return `make(n)`: the n-th request's body of `batch` readings, each one second apart
    per device, so no two requests of a device repeat a timestamp."""
    base = start.timestamp()

    def make(n: int) -> bytes:
        readings = [
            {
                "timestamp": dt.datetime.fromtimestamp(base + (n * batch + i) * 0.001, dt.UTC),
                "measurements": MEASUREMENTS,
            }
            for i in range(batch)
        ]
        return orjson.dumps({"readings": readings} if batch > 1 else readings[0])

    return make


async def run_device(
    host: str,
    port: int,
    device: dict[str, str],
    *,
    batch: int,
    deadline: float,
    start: dt.datetime,
    tally: Tally,
) -> None:
    """Send back-to-back requests until the deadline; count what the server stored."""
    connection = await Connection.open(host, port)
    head = request_head(host, port, device["id"], device["token"])
    make = body_maker(batch, start)
    n = 0
    try:
        while time.perf_counter() < deadline:
            body = make(n)
            sent = time.perf_counter()
            status, headers, payload = await connection.post(head, body)
            if status == 201:
                tally.latencies.append(time.perf_counter() - sent)
                tally.stored += orjson.loads(payload)["stored"]
                tally.requests += 1
                n += 1
            else:
                tally.refused += 1
                await asyncio.sleep(float(headers.get(b"retry-after", b"0.1")))
    finally:
        await connection.close()
