"""The record of answers given: a repeat finds its answer while that answer is being written."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from medcloud.interop.answers import Answer, Answers

ANSWER = Answer(
    "interface-1",
    "MSG-0001",
    "ORU",
    "AA",
    "MSH|^~\\&|MEDCLOUD\rMSA|AA|MSG-0001\r",
    dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC),
)


class _Rows:
    def first(self) -> None:
        return None  # the database has no row yet


class _Session:
    """Just enough of a session on SQLite for the write and the look-up."""

    def get_bind(self) -> Any:
        return SimpleNamespace(dialect=SimpleNamespace(name="sqlite"))

    async def execute(self, _statement: object, _rows: object = None) -> _Rows:
        return _Rows()


class _GatedUnitOfWork:
    """A unit of work whose commit lands only when the test lets it."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.session = _Session()
        self._gate = gate

    async def __aenter__(self) -> _GatedUnitOfWork:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def commit(self) -> None:
        await self._gate.wait()


@contextlib.asynccontextmanager
async def _reads() -> AsyncIterator[_Session]:
    yield _Session()


async def test_a_repeat_during_the_write_of_its_answer_gets_that_answer() -> None:
    gate = asyncio.Event()
    answers = Answers(
        uow_factory=lambda: _GatedUnitOfWork(gate),  # type: ignore[arg-type,return-value]
        read_sessions=_reads,  # type: ignore[arg-type]
    )
    answers.keep(ANSWER)
    writing = asyncio.create_task(answers.write())
    await asyncio.sleep(0)  # the write has begun and waits on its commit
    assert not writing.done()
    assert await answers.given(ANSWER.interface_id, ANSWER.control_id) == ANSWER
    gate.set()
    assert await writing == 1
    # Written: no longer held in memory, so the look-up now asks the database (empty here).
    assert await answers.given(ANSWER.interface_id, ANSWER.control_id) is None
    await answers.close()
