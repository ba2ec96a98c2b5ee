"""Remembered look-ups: found and not found alike for their time, one look-up per key at once."""

from __future__ import annotations

import asyncio

from medcloud.platform.memo import Memo


class Directory:
    """Names by key, counting how often it is asked."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known
        self.lookups = 0

    async def get(self, key: str) -> str | None:
        self.lookups += 1
        await asyncio.sleep(0)
        return self.known.get(key)


async def test_known_and_unknown_keys_are_remembered_for_the_ttl() -> None:
    directory = Directory({"d1": "monitor"})
    memo: Memo[str, str | None] = Memo(ttl_seconds=60)

    assert await memo.get("d1", lambda: directory.get("d1")) == ("monitor", True)
    assert await memo.get("d1", lambda: directory.get("d1")) == ("monitor", False)
    assert await memo.get("ghost", lambda: directory.get("ghost")) == (None, True)
    assert await memo.get("ghost", lambda: directory.get("ghost")) == (None, False)
    assert directory.lookups == 2

    expired: Memo[str, str | None] = Memo(ttl_seconds=0)
    await expired.get("d1", lambda: directory.get("d1"))
    assert (await expired.get("d1", lambda: directory.get("d1")))[1] is True


async def test_concurrent_misses_for_one_key_share_a_lookup() -> None:
    directory = Directory({"d1": "monitor"})
    memo: Memo[str, str | None] = Memo(ttl_seconds=60)

    found = await asyncio.gather(*(memo.get("d1", lambda: directory.get("d1")) for _ in range(50)))

    assert directory.lookups == 1
    assert {value for value, _ in found} == {"monitor"}
    assert sum(fresh for _, fresh in found) == 1


async def test_a_value_put_replaces_the_one_remembered() -> None:
    directory = Directory({"d1": "monitor"})
    memo: Memo[str, str | None] = Memo(ttl_seconds=60)
    await memo.get("d1", lambda: directory.get("d1"))

    memo.put("d1", "moved")

    assert await memo.get("d1", lambda: directory.get("d1")) == ("moved", False)
