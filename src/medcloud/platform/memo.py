"""Answers remembered for a while in this process: look-ups that every message would otherwise
repeat (the device a transport names, the patient an identifier names)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_ENTRIES = 100_000
"""Beyond this many, expired entries are dropped (a flood of names cannot grow it forever)."""


class Memo(Generic[K, V]):
    """Values by key, remembered for `ttl_seconds`, "not found" too, so a flood of unknown
    keys costs one look-up each.

    Concurrent misses for one key share a look-up: a worker starting on a backlog receives many
    messages at once, mostly from senders it has not looked up yet.
    """

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._entries: dict[K, tuple[float, V]] = {}
        self._lookups: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, look_up: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Return the value of `key`, and whether this call looked it up rather than finding it
        remembered."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1], False
        lookup = self._lookups.get(key)
        if lookup is not None:
            return await asyncio.shield(lookup), False
        lookup = asyncio.ensure_future(look_up())
        self._lookups[key] = lookup
        try:
            value = await asyncio.shield(lookup)
        finally:
            if self._lookups.get(key) is lookup:
                del self._lookups[key]
        self.put(key, value)
        return value, True

    def put(self, key: K, value: V) -> None:
        """Remember `value` as that of `key` from now on."""
        now = time.monotonic()
        if len(self._entries) > MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[key] = (now + self._ttl, value)
