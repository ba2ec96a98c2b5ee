"""Waiting for a condition instead of for a while: each wait names what it waits for and fails
with that name when it does not come true in time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import func, select

from medcloud.platform.models import DeadLetter, OutboxMessage, ProcessedEvent
from medcloud.platform.runtime import Runtime

T = TypeVar("T")


async def until(
    probe: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float = 15.0,
    interval: float = 0.01,
) -> T:
    """Await `probe` until it returns something truthy and return that; fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)


async def until_true(
    check: Callable[[], T], *, what: str, timeout: float = 15.0, interval: float = 0.001
) -> T:
    """Call `check` until it returns something truthy and return that; fail after `timeout`."""

    async def probe() -> T:
        return check()

    return await until(probe, what=what, timeout=timeout, interval=interval)


async def consumed(
    runtime: Runtime, *, consumer: str, routing_key: str, timeout: float = 15.0
) -> None:
    """Wait until every `routing_key` event in the outbox has been published and `consumer` has
    applied it (or dead-lettered it): nothing such an event could still cause is under way."""

    async def outstanding() -> int:
        done = select(ProcessedEvent.event_id).where(ProcessedEvent.consumer == consumer)
        dead = select(DeadLetter.event_id).where(DeadLetter.consumer == consumer)
        async with runtime.read_sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.routing_key == routing_key,
                    OutboxMessage.published_at.is_(None)
                    | (OutboxMessage.event_id.not_in(done) & OutboxMessage.event_id.not_in(dead)),
                )
            )
        return int(count or 0)

    async def none_left() -> bool:
        return await outstanding() == 0

    await until(
        none_left,
        what=f"{consumer} to apply every {routing_key} event in the outbox",
        timeout=timeout,
    )
