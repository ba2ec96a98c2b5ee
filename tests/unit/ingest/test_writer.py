"""The micro-batch writer: batches requests, answers each after commit, refuses when full."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from medcloud.ingest import writer as writer_module
from medcloud.ingest.repository import Row
from medcloud.ingest.writer import Backlogged, Job, ReadingWriter
from medcloud.platform.metrics import Metrics

T = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def rows(device: str, n: int) -> list[Row]:
    return [
        Row("o", device, None, "heart_rate", 70.0, "/min", T + dt.timedelta(seconds=i), T, False)
        for i in range(n)
    ]


async def submit(
    writer: ReadingWriter, device: str, n: int, wait_ms: float | None = None
) -> list[Row]:
    return await writer.submit(
        rows(device, n), organisation_id="o", device_id=device, received_at=T, wait_ms=wait_ms
    )


@dataclass
class FakeStore:
    """Records each committed batch's devices instead of writing to a database."""

    batches: list[list[str]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, _factory: object, jobs: Sequence[Job]) -> list[list[Row]]:
        await self.gate.wait()
        self.batches.append([job.device_id for job in jobs])
        return [list(job.rows) for job in jobs]


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    fake.gate.set()
    monkeypatch.setattr(writer_module, "store", fake)
    return fake


def make(**overrides: Any) -> ReadingWriter:
    options: dict[str, Any] = {"batch_rows": 100, "batch_ms": 5, "max_pending_rows": 1000}
    return ReadingWriter(uow_factory=lambda: None, metrics=Metrics(), **(options | overrides))  # type: ignore[arg-type,return-value]


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[ReadingWriter]:
    """A writer running for the block, then stopped once what it holds is written."""
    writer, stop = make(**overrides), asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    await asyncio.sleep(0)
    try:
        yield writer
    finally:
        stop.set()
        await task


async def test_concurrent_requests_are_committed_together_and_each_gets_its_rows(
    batches: FakeStore,
) -> None:
    async with running() as writer:
        results = await asyncio.gather(*(submit(writer, f"d{i}", 3) for i in range(5)))
    assert [len(r) for r in results] == [3] * 5
    assert [r[0].device_id for r in results] == [f"d{i}" for i in range(5)]
    assert len(batches.batches) == 1 and sorted(batches.batches[0]) == [f"d{i}" for i in range(5)]


async def test_a_full_writer_refuses_at_once_instead_of_queueing(
    batches: FakeStore,
) -> None:
    batches.gate.clear()  # the database is stuck
    async with running(max_pending_rows=10) as writer:
        first = asyncio.create_task(submit(writer, "a", 8))
        await asyncio.sleep(0.02)
        with pytest.raises(Backlogged):
            await submit(writer, "b", 8)
        batches.gate.set()
        assert len(await first) == 8
        assert len(await submit(writer, "b", 8)) == 8


async def test_a_stopped_writer_refuses_new_work(batches: FakeStore) -> None:
    writer, stop = make(), asyncio.Event()
    stop.set()
    await writer.run(stop)
    with pytest.raises(Backlogged):
        await submit(writer, "a", 1)
    assert batches.batches == []


async def test_a_steady_stream_is_gathered_into_one_batch_until_it_pauses(
    batches: FakeStore,
) -> None:
    async with running(batch_ms=40) as writer:
        sent = []
        for i in range(8):  # each arrives well within batch_ms of the one before
            sent.append(asyncio.create_task(submit(writer, f"d{i}", 1, wait_ms=60_000)))
            await asyncio.sleep(0.01)
        await asyncio.gather(*sent)
        assert batches.batches == [[f"d{i}" for i in range(8)]]


async def test_a_lone_message_is_committed_after_the_lull_not_its_patience(
    batches: FakeStore,
) -> None:
    async with running(batch_ms=5) as writer:
        async with asyncio.timeout(10):
            assert len(await submit(writer, "d1", 2, wait_ms=60_000)) == 2


async def test_a_request_is_committed_when_due_even_while_messages_keep_arriving(
    batches: FakeStore,
) -> None:
    async with running(batch_ms=40) as writer:
        streaming = True
        messages: list[asyncio.Task[list[Row]]] = []

        async def stream() -> None:
            while streaming:
                sent = submit(writer, f"m{len(messages)}", 1, wait_ms=60_000)
                messages.append(asyncio.create_task(sent))
                await asyncio.sleep(0.01)

        streamer = asyncio.create_task(stream())
        await asyncio.sleep(0.05)
        async with asyncio.timeout(10):
            assert len(await submit(writer, "request", 1)) == 1  # due 40 ms after it came
        streaming = False
        await streamer
        await asyncio.gather(*messages)
    assert "request" in batches.batches[0]


async def test_a_stream_that_never_pauses_is_committed_when_its_oldest_is_due(
    batches: FakeStore,
) -> None:
    async with running(batch_ms=40) as writer:
        sent = []
        for i in range(40):  # 400 ms of arrivals 10 ms apart, each allowed to wait 100 ms
            sent.append(asyncio.create_task(submit(writer, f"d{i}", 1, wait_ms=100)))
            await asyncio.sleep(0.01)
        await asyncio.gather(*sent)
        assert len(batches.batches) >= 2
        committed = sorted(device for batch in batches.batches for device in batch)
        assert committed == sorted(f"d{i}" for i in range(40))
