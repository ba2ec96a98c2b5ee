"""Time as a dependency, so tests can move it."""

from __future__ import annotations

import datetime as dt
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
