"""The micro-batch writer: batches requests, answers each after commit, refuses when full.

Time is the writer's injected timer, moved by the test: no test here waits on the wall clock.
"""

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
from medcloud.platform.clock import ManualTimer
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
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, _factory: object, jobs: Sequence[Job]) -> list[list[Row]]:
        self.entered.set()
        await self.gate.wait()
        self.batches.append([job.device_id for job in jobs])
        return [list(job.rows) for job in jobs]


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    fake.gate.set()
    monkeypatch.setattr(writer_module, "store", fake)
    return fake


@pytest.fixture
def timer() -> ManualTimer:
    return ManualTimer()


async def idle() -> None:
    """Let every task that can run, run, until all wait on the timer, a gate or a future."""
    for _ in range(50):
        await asyncio.sleep(0)


def make(timer: ManualTimer, **overrides: Any) -> ReadingWriter:
    options: dict[str, Any] = {"batch_rows": 100, "batch_ms": 5, "max_pending_rows": 1000}
    return ReadingWriter(
        uow_factory=lambda: None,  # type: ignore[arg-type,return-value]
        metrics=Metrics(),
        timer=timer,
        **(options | overrides),
    )


@asynccontextmanager
async def running(timer: ManualTimer, **overrides: Any) -> AsyncIterator[ReadingWriter]:
    """A writer running for the block, then stopped once what it holds is written."""
    writer, stop = make(timer, **overrides), asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    await asyncio.sleep(0)
    try:
        yield writer
    finally:
        stop.set()
        await task


async def drained(timer: ManualTimer, tasks: Sequence[asyncio.Task[list[Row]]]) -> None:
    """Move time on, a lull at a time, until every task's rows are committed."""
    for _ in range(100):
        await idle()
        if all(task.done() for task in tasks):
            await asyncio.gather(*tasks)
            return
        timer.advance(0.050)
    raise AssertionError("rows were never committed")


def sent(
    writer: ReadingWriter, device: str, n: int = 1, wait_ms: float | None = None
) -> asyncio.Task[list[Row]]:
    return asyncio.create_task(submit(writer, device, n, wait_ms))


async def test_concurrent_requests_are_committed_together_and_each_gets_its_rows(
    batches: FakeStore, timer: ManualTimer
) -> None:
    async with running(timer) as writer:
        requests = [sent(writer, f"d{i}", 3) for i in range(5)]
        await idle()
        assert batches.batches == []  # lingering for more
        timer.advance(0.005)
        results = await asyncio.gather(*requests)
    assert [len(r) for r in results] == [3] * 5
    assert [r[0].device_id for r in results] == [f"d{i}" for i in range(5)]
    assert len(batches.batches) == 1 and sorted(batches.batches[0]) == [f"d{i}" for i in range(5)]


async def test_a_full_batch_is_committed_without_lingering(
    batches: FakeStore, timer: ManualTimer
) -> None:
    async with running(timer, batch_rows=10) as writer:
        first = sent(writer, "a", 4)
        second = sent(writer, "b", 6)
        await idle()
        assert batches.batches == [["a", "b"]]  # time never moved
        assert [len(await first), len(await second)] == [4, 6]


async def test_a_full_writer_refuses_at_once_instead_of_queueing(
    batches: FakeStore, timer: ManualTimer
) -> None:
    batches.gate.clear()  # the database is stuck
    async with running(timer, max_pending_rows=10) as writer:
        first = sent(writer, "a", 8)
        await idle()
        timer.advance(0.005)
        await batches.entered.wait()
        with pytest.raises(Backlogged):
            await submit(writer, "b", 8)
        batches.gate.set()
        assert len(await first) == 8
        second = sent(writer, "b", 8)
        await idle()
        timer.advance(0.005)
        assert len(await second) == 8


async def test_a_stopped_writer_refuses_new_work(batches: FakeStore, timer: ManualTimer) -> None:
    writer, stop = make(timer), asyncio.Event()
    stop.set()
    await writer.run(stop)
    with pytest.raises(Backlogged):
        await submit(writer, "a", 1)
    assert batches.batches == []


async def test_a_steady_stream_is_gathered_into_one_batch_until_it_pauses(
    batches: FakeStore, timer: ManualTimer
) -> None:
    async with running(timer, batch_ms=40) as writer:
        stream = []
        for i in range(8):  # each arrives well within batch_ms of the one before
            stream.append(sent(writer, f"d{i}", wait_ms=60_000))
            await idle()
            timer.advance(0.010)
        await idle()
        assert batches.batches == []
        timer.advance(0.040)  # the pause
        await drained(timer, stream)
        assert batches.batches == [[f"d{i}" for i in range(8)]]


async def test_a_lone_message_is_committed_after_the_lull_not_its_patience(
    batches: FakeStore, timer: ManualTimer
) -> None:
    async with running(timer, batch_ms=5) as writer:
        message = sent(writer, "d1", 2, wait_ms=60_000)
        await idle()
        timer.advance(0.005)
        await idle()
        assert message.done() and len(message.result()) == 2


async def test_a_request_is_committed_when_due_even_while_messages_keep_arriving(
    batches: FakeStore, timer: ManualTimer
) -> None:
    async with running(timer, batch_ms=40) as writer:
        messages = []
        for i in range(5):
            messages.append(sent(writer, f"m{i}", wait_ms=60_000))
            await idle()
            timer.advance(0.010)
        request = sent(writer, "request")  # due 40 ms after it comes
        for i in range(5, 9):  # messages keep arriving, 10 ms apart: never a lull
            await idle()
            assert not request.done()
            messages.append(sent(writer, f"m{i}", wait_ms=60_000))
            timer.advance(0.010)
        await idle()
        assert request.done() and len(request.result()) == 1
        assert "request" in batches.batches[0]
        await drained(timer, messages)


async def test_a_stream_that_never_pauses_is_committed_when_its_oldest_is_due(
    batches: FakeStore, timer: ManualTimer
) -> None:
    async with running(timer, batch_ms=40) as writer:
        stream = []
        for i in range(40):  # 400 ms of arrivals 10 ms apart, each allowed to wait 100 ms
            stream.append(sent(writer, f"d{i}", wait_ms=100))
            await idle()
            if i == 12:  # d0 came 120 ms ago and could wait 100: committed, stream or not
                assert batches.batches and batches.batches[0][0] == "d0"
            timer.advance(0.010)
        await drained(timer, stream)
        assert len(batches.batches) >= 4
        committed = [device for batch in batches.batches for device in batch]
        assert committed == [f"d{i}" for i in range(40)]
