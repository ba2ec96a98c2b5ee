"""HL7 v2 over MLLP: PCD-01 messages from monitor gateways, each acknowledged once stored.

    medcloud bench mllp --connections 16 --seconds 30
    medcloud bench mllp --deployment embedded --connections 4 --seconds 30

(`.venv/bin/python -m bench.mllp …` is the same.) Starts `medcloud serve` listening for MLLP on
a database of its own (PostgreSQL by default, or SQLite), then opens `--connections` gateway
connections, each sending ORU^R01 messages for `--monitors` monitors of its own in turn (one
monitor's five vitals at one instant per message, the shape of a periodic PCD-01 report) and,
as gateways do in original-mode acknowledgement, each message only after the previous one's
ACK. Every monitor sends one message first, untimed, which registers its patient (from PID) and
discovers the monitor (from OBX-18); then the window of `--seconds` is timed.

The same-run baseline is the same gateways against an MLLP listener in this process that answers
AA at once and stores nothing: what this machine's sockets and the client cost, the ceiling of any
listener here.

Prints one JSON object: messages_per_s, readings_per_s, ack_p50_ms, ack_p99_ms (send to ACK),
acknowledged (AA), refused (anything else), readings_stored (counted in the database after the
run: every AA'd reading, none twice), and baseline_messages_per_s, baseline_ack_p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from bench.deployment import (
    admin_headers,
    free_port,
    medcloud,
    medcloud_env,
    own_database,
    process,
    stored_rows,
    wait_ready,
)
from bench.figures import percentile_ms

START, END = b"\x0b", b"\x1c\x0d"
VITALS = (
    ("150456^MDC_PULS_OXIM_SAT_O2", "262688^MDC_DIM_PERCENT", 97),
    ("149530^MDC_PULS_OXIM_PULS_RATE", "264864^MDC_DIM_BEAT_PER_MIN", 72),
    ("150021^MDC_PRESS_BLD_NONINV_SYS", "266016^MDC_DIM_MMHG", 121),
    ("150022^MDC_PRESS_BLD_NONINV_DIA", "266016^MDC_DIM_MMHG", 79),
    ("150364^MDC_TEMP_BODY", "268192^MDC_DIM_DEGC", 36.9),
)


def message(control_id: str, monitor: str, at: dt.datetime, step: int) -> bytes:
    """One monitor's periodic vitals as a PCD-01 ORU^R01, framed for MLLP."""
    time_ = at.strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"
    equipment = f"{monitor}^EUI-64"
    rows = [
        f"MSH|^~\\&|BENCHGW|WARD|MEDCLOUD|HOSP|{time_}||ORU^R01^ORU_R01|{control_id}|P|2.6",
        f"PID|||MRN-{monitor}^^^HOSP^MR||BENCH^PATIENT||19700101|F",
        f"OBR|1|{control_id}|{control_id}|182777000^monitoring of patient^SNOMED-CT|||{time_}",
        f"OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||{equipment}",
    ]
    for n, (code, unit, value) in enumerate(VITALS, start=2):
        shown = value + (step % 3) if isinstance(value, int) else value
        rows.append(
            f"OBX|{n}|NM|{code}^MDC|1.1.1.{n}|{shown}|{unit}^MDC|||||R|||{time_}||||{equipment}"
        )
    return START + "\r".join(rows).encode() + END


@dataclass
class Tally:
    """What the gateways saw."""

    latencies: list[float] = field(default_factory=list)
    acknowledged: int = 0
    refused: int = 0


async def gateway(
    port: int, name: str, monitors: int, tally: Tally | None, until: float | None
) -> None:
    """One connection: its monitors' messages in turn, each after the last one's ACK, a
    second apart for each monitor; with no `until`, one message per monitor (the first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    step = 0 if until is None else monitors
    try:
        while until is None or time.perf_counter() < until:
            monitor = f"{name}{step % monitors:04X}"
            at = start + dt.timedelta(seconds=step // monitors)
            sent = time.perf_counter()
            writer.write(message(f"{name}-{step}", monitor, at, step))
            await writer.drain()
            answer = await reader.readuntil(END)
            if tally is not None:
                tally.latencies.append(time.perf_counter() - sent)
                if b"MSA|AA|" in answer:
                    tally.acknowledged += 1
                else:
                    tally.refused += 1
            step += 1
            if until is None and step == monitors:
                return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def drive(port: int, args: argparse.Namespace) -> tuple[Tally, float]:
    """Register every monitor, then time the window; return what was seen and its length."""
    names = [f"00AA{c:04X}FFFE" for c in range(args.connections)]
    await asyncio.gather(*(gateway(port, n, args.monitors, None, None) for n in names))
    tally = Tally()
    began = time.perf_counter()
    until = began + args.seconds
    await asyncio.gather(*(gateway(port, n, args.monitors, tally, until) for n in names))
    return tally, time.perf_counter() - began


async def answer_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The baseline listener: AA to every frame, nothing read or stored."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            frame = await reader.readuntil(END)
            control = frame.split(b"|", 10)[9]
            writer.write(START + b"MSH|^~\\&|MEDCLOUD||||||ACK|1|P|2.6\rMSA|AA|" + control + END)
            await writer.drain()
    writer.close()


async def baseline(args: argparse.Namespace) -> tuple[Tally, float]:
    """The same gateways against a listener that answers at once."""
    server = await asyncio.start_server(answer_at_once, "127.0.0.1", 0, limit=2**20)
    try:
        return await drive(int(server.sockets[0].getsockname()[1]), args)
    finally:
        server.close()
        await server.wait_closed()


async def interface_ready(base: str) -> None:
    """Wait until the deployment's local HL7 interface exists (made as it first starts)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        headers = await admin_headers(client)
        for _ in range(300):
            found = await client.get("/api/v1/hl7/interfaces", headers=headers)
            if found.json()["items"]:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the local HL7 interface was never made")


async def measure(args: argparse.Namespace, base: str, port: int, dsn: str) -> dict[str, object]:
    """Time the baseline, then the deployment; return the figures."""
    floor, floor_seconds = await baseline(args)
    await interface_ready(base)
    tally, seconds = await drive(port, args)
    stored = await stored_rows(dsn)
    registered = args.connections * args.monitors * len(VITALS)
    return {
        "benchmark": "mllp",
        "deployment": args.deployment,
        "connections": args.connections,
        "monitors_per_connection": args.monitors,
        "seconds": round(seconds, 1),
        "messages_per_s": round(len(tally.latencies) / seconds),
        "readings_per_s": round(tally.acknowledged * len(VITALS) / seconds),
        "ack_p50_ms": percentile_ms(tally.latencies, 0.50),
        "ack_p99_ms": percentile_ms(tally.latencies, 0.99),
        "acknowledged": tally.acknowledged,
        "refused": tally.refused,
        "readings_stored": stored,
        "readings_acknowledged": registered + tally.acknowledged * len(VITALS),
        "baseline_messages_per_s": round(len(floor.latencies) / floor_seconds),
        "baseline_ack_p99_ms": percentile_ms(floor.latencies, 0.99),
    }


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="medcloud bench mllp",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--deployment", choices=("postgres", "embedded"), default="postgres")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--monitors", type=int, default=8, help="monitors per connection")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database the run may create another database from",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark on a deployment of its own and print its JSON."""
    args = parse(argv)
    with contextlib.ExitStack() as stack:
        var, dsn = own_database(stack, args.deployment, args.postgres)
        port, mllp_port = free_port(), free_port()
        env = medcloud_env(var, dsn, MEDCLOUD_MLLP__PORT=str(mllp_port))
        stack.enter_context(
            process(medcloud("serve", "--port", str(port)), env, var.parent / "serve.log")
        )
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        result = asyncio.run(measure(args, base, mllp_port, dsn))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
