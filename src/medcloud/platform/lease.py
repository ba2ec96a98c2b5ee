"""Leases: each singleton loop runs in one process at a time, however many replicas run.

A lease is a row of `lease` (name, holder, expires_at), taken and renewed by one conditional
upsert (Healthchecks' claim idiom, as the outbox relay claims rows): insert the row, or take it
over where it has run out or is already ours. The database decides who wins; every process reads
the time from its own `Clock`, which is why the holder keeps a margin (see `MARGIN`).

`lead` runs a loop only while its process holds the loop's lease: it renews every third of the
lease's duration, cancels the loop once a renewal can no longer be counted on, and gives the
lease back when the process stops, so that a successor need not wait for it to run out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import socket
from collections.abc import Callable, Coroutine
from typing import Any, cast
from weakref import WeakKeyDictionary

import structlog
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import String, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.clock import Clock, Timer
from medcloud.platform.db import Base, UTCDateTime, upsert

log = structlog.get_logger(__name__)

RENEW_EVERY = 1 / 3
"""A holder renews its lease every third of the lease's duration."""
RETRY_EVERY = 1 / 12
"""After a failed renewal it tries again this much of the duration later."""
MARGIN = 1 / 4
"""A holder cancels its loop when this much of the lease is left since the last renewal it
sent that was granted. The lease runs out on the database's row at (holder's clock at sending) +
duration, and a contender takes it when its own clock passes that: the margin must cover the
contender's clock running ahead of the holder's, plus the time a cancelled loop takes to reach
its next await. Hosts kept in step by NTP differ by milliseconds; a quarter of the default 15 s
lease leaves almost 4 s for a stalled event loop or a slow cancellation."""
FOLLOW_FLOOR = 1 / 20
"""A process waiting for a lease looks again at least this much of the duration later."""

HOLDER_LENGTH = 200


class Lease(Base):
    """Which process runs a singleton loop, until when."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(HOLDER_LENGTH))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


LEASE = cast(Table, Lease.__table__)


def holder_id() -> str:
    """Name this holder apart from every other: host, process id, and a random part for two
    holders in one process (tests run two lifecycles side by side)."""
    host = socket.gethostname()[: HOLDER_LENGTH - 40]
    return f"{host}:{os.getpid()}:{secrets.token_hex(8)}"


class Leases:
    """Take, renew and give back named leases on behalf of one holder."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        read_sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        holder: str,
        seconds: float,
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions
        self._clock = clock
        self.holder = holder
        self.seconds = seconds

    async def acquire(self, name: str) -> bool:
        """Take or renew lease `name` for `seconds` from now; tell whether this holder has it."""
        now = self._clock.now()
        # Committed synchronously, unlike the relay's claims: a renewal lost in a database crash
        # would leave the holder running its loop after the row says its lease ran out.
        async with self._sessions() as session, session.begin():
            statement = upsert(session)(LEASE).values(
                name=name, holder=self.holder, expires_at=now + dt.timedelta(seconds=self.seconds)
            )
            statement = statement.on_conflict_do_update(
                index_elements=[LEASE.c.name],
                set_={
                    "holder": statement.excluded.holder,
                    "expires_at": statement.excluded.expires_at,
                },
                where=(LEASE.c.expires_at < now) | (LEASE.c.holder == self.holder),
            ).returning(LEASE.c.holder)
            holder = await session.scalar(statement)
        return bool(holder == self.holder)

    async def current(self, name: str) -> tuple[str, dt.datetime] | None:
        """Return who holds lease `name` and until when, None if nobody has taken it."""
        async with self._read_sessions() as session:
            row = (
                await session.execute(
                    select(LEASE.c.holder, LEASE.c.expires_at).where(LEASE.c.name == name)
                )
            ).first()
        return None if row is None else (row.holder, row.expires_at)

    async def wait_before_trying(self, name: str) -> float:
        """Seconds to wait before trying to take lease `name`: none when it is free, has run
        out or is ours; else until it runs out, but never longer than a renewal period, so that
        a lease given back is taken soon."""
        held = await self.current(name)
        if held is None:
            return 0.0
        holder, expires_at = held
        left = (expires_at - self._clock.now()).total_seconds()
        if holder == self.holder or left < 0:
            return 0.0
        return min(max(left, self.seconds * FOLLOW_FLOOR), self.seconds * RENEW_EVERY)

    async def release(self, name: str) -> None:
        """Give lease `name` back, if this holder still has it."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(LEASE).where(LEASE.c.name == name, LEASE.c.holder == self.holder)
            )


_GAUGES: WeakKeyDictionary[CollectorRegistry, Gauge] = WeakKeyDictionary()


def held_gauge(registry: CollectorRegistry) -> Gauge:
    """The `medcloud_lease_held{name}` gauge of a process's registry, made on first use."""
    gauge = _GAUGES.get(registry)
    if gauge is None:
        gauge = Gauge(
            "medcloud_lease_held",
            "1 while this process holds the lease of a singleton loop, and runs that loop.",
            ["name"],
            registry=registry,
        )
        _GAUGES[registry] = gauge
    return gauge


def _unchanged(_held: bool) -> None:
    return None


async def lead(
    name: str,
    run: Callable[[], Coroutine[Any, Any, None]],
    *,
    leases: Leases,
    timer: Timer,
    stop: asyncio.Event,
    on_change: Callable[[bool], None] = _unchanged,
) -> None:
    """Run `run()` only while `leases` holds lease `name`, until `stop` is set.

    `on_change(True)` as the loop starts under the lease, `on_change(False)` once it has ended.
    """
    period = leases.seconds * RENEW_EVERY
    while not stop.is_set():
        try:
            wait = await leases.wait_before_trying(name)
        except Exception as exc:  # noqa: BLE001  (keep trying once the database answers)
            log.warning("lease.read_failed", lease=name, error=type(exc).__name__)
            wait = period
        if wait > 0:
            await _first(timer, wait, stop=stop)
            continue
        sent = timer.monotonic()
        taken = await _attempt(name, leases, timer, within=period)
        if taken:
            await _hold(name, run, leases=leases, timer=timer, since=sent, on_change=on_change)
        elif taken is None:
            await _first(timer, period, stop=stop)


async def _hold(
    name: str,
    run: Callable[[], Coroutine[Any, Any, None]],
    *,
    leases: Leases,
    timer: Timer,
    since: float,
    on_change: Callable[[bool], None],
) -> None:
    """Run the loop from a granted lease until it ends (the process stops) or the lease can no
    longer be counted on; give the lease back only if this holder still has it."""
    duration = leases.seconds
    deadline = since + duration * (1 - MARGIN)
    renew_at = since + duration * RENEW_EVERY
    loop = asyncio.create_task(run(), name=f"lease:{name}")
    on_change(True)
    log.info("lease.taken", lease=name, holder=leases.holder)
    kept = True
    try:
        while not loop.done():
            now = timer.monotonic()
            if now >= deadline:
                kept = False
                log.warning("lease.lapsed", lease=name)
                break
            if now < renew_at:
                await _first(timer, min(renew_at, deadline) - now, task=loop)
                continue
            granted = await _attempt(name, leases, timer, within=deadline - now)
            if granted:
                deadline, renew_at = now + duration * (1 - MARGIN), now + duration * RENEW_EVERY
            elif granted is None:
                renew_at = now + duration * RETRY_EVERY
            else:
                kept = False
                log.warning("lease.lost", lease=name)
                break
    finally:
        if not loop.done():
            loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        on_change(False)
        if kept:
            try:
                await leases.release(name)
            except Exception as exc:  # noqa: BLE001  (it runs out by itself)
                log.warning("lease.release_failed", lease=name, error=type(exc).__name__)


_ABANDONED: set[asyncio.Future[bool]] = set()
"""Attempts given up on while the database had not answered: kept until they end."""


async def _attempt(name: str, leases: Leases, timer: Timer, *, within: float) -> bool | None:
    """Try to take or renew lease `name`: True granted, False held by another, None when the
    database failed or did not answer `within` seconds."""
    attempt = asyncio.ensure_future(leases.acquire(name))
    try:
        await _first(timer, within, task=attempt)
    finally:
        if not attempt.done():
            attempt.cancel()
            _ABANDONED.add(attempt)
            attempt.add_done_callback(_forget)
    if not attempt.done() or attempt.cancelled():
        log.warning("lease.slow", lease=name)
        return None
    error = attempt.exception()
    if error is not None:
        log.warning("lease.failed", lease=name, error=type(error).__name__)
        return None
    return attempt.result()


def _forget(attempt: asyncio.Future[bool]) -> None:
    _ABANDONED.discard(attempt)
    if not attempt.cancelled():
        attempt.exception()  # retrieved, so that asyncio does not report it as lost


async def _first(
    timer: Timer,
    seconds: float,
    *,
    task: asyncio.Future[Any] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Wait until `task` is done, `stop` is set or `seconds` have passed on `timer`; `task`
    is left as it is."""
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(timer.sleep(max(seconds, 0.0)))]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(
            [*waiters, *([task] if task is not None else [])],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
