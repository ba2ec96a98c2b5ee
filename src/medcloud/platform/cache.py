"""A small key-value cache port: in-process by default, Redis when processes must share it."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as redis


class Cache(Protocol):
    """Remember short-lived values by key."""

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        """Store `value` for `ttl_seconds`."""
        ...

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        ...

    async def ping(self) -> None:
        """Raise if the cache cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """A bounded LRU cache with expiry, for one process."""

    def __init__(self, *, max_items: int = 100_000) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_items = max_items

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when absent or expired."""
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        """Store `value` for `ttl_seconds`, evicting the least recently used beyond the bound."""
        self._items[key] = (time.monotonic() + ttl_seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        self._items.pop(key, None)

    async def ping(self) -> None:
        """Always reachable."""

    async def close(self) -> None:
        """Drop everything."""
        self._items.clear()


REDIS_CONNECTIONS = 100
"""Connections a process keeps to Redis at most; more concurrent commands wait for one."""
REDIS_WAIT_SECONDS = 5.0
"""How long a command waits for a free connection before it fails."""


class RedisCache:
    """A cache shared by every process through Redis."""

    def __init__(self, url: str, *, prefix: str = "medcloud:") -> None:
        # redis-py's plain pool refuses the 101st concurrent command outright; a burst of
        # requests then failed on the cache. Waiting briefly for a connection is what a pool is
        # for.
        self._redis = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_WAIT_SECONDS
            )
        )
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        """Return the value, or None when absent or expired."""
        value = await self._redis.get(self._prefix + key)
        return value if value is None or isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        """Store `value` for `ttl_seconds`."""
        await self._redis.set(self._prefix + key, value, px=max(1, int(ttl_seconds * 1000)))

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        await self._redis.delete(self._prefix + key)

    async def ping(self) -> None:
        """Raise if Redis does not answer."""
        await self._redis.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
