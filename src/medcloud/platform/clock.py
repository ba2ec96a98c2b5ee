"""Time as a dependency, so tests can move it: the wall clock, and a timer for waits."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Tell the current time."""

    def now(self) -> dt.datetime:
        """Return the current UTC time."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> dt.datetime:
        """Return the current UTC time."""
        return dt.datetime.now(dt.UTC)


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, at: dt.datetime) -> None:
        self._at = at

    def now(self) -> dt.datetime:
        """Return the time it was set to."""
        return self._at

    def advance(self, **delta: float) -> None:
        """Move forward by a `timedelta(**delta)`."""
        self._at += dt.timedelta(**delta)


class Timer(Protocol):
    """Measure intervals and wait them out."""

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on that clock."""
        ...


class SystemTimer:
    """`time.monotonic` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        """Return seconds on the system's monotonic clock."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        await asyncio.sleep(seconds)


class ManualTimer:
    """A timer whose time moves only when told to; a sleeper wakes once time passes its end."""

    def __init__(self) -> None:
        self._now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        """Return the time it was moved to."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until time has been moved past `seconds` from now (only yield for none)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waking = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, waking))
        await waking

    @property
    def sleeping(self) -> int:
        """How many waits have not ended."""
        return sum(1 for _, waking in self._sleepers if not waking.done())

    def advance(self, seconds: float) -> None:
        """Move forward by `seconds`, waking every sleeper whose wait is over."""
        self._now += seconds
        waiting = []
        for end, waking in self._sleepers:
            if waking.done():
                continue
            if end <= self._now:
                waking.set_result(None)
            else:
                waiting.append((end, waking))
        self._sleepers = waiting
