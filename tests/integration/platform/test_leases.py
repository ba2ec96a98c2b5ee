"""Singleton loops run in one process at a time across replicas, under a database lease, and
move to another process when their holder stops or its lease runs out."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from medcloud.bootstrap import Lifecycle, bootstrap
from medcloud.config import Settings
from medcloud.platform.clock import FrozenClock
from medcloud.platform.context import Context
from medcloud.platform.lease import Leases
from medcloud.platform.runtime import Runtime
from tests.support.client import eventually


@asynccontextmanager
async def runtime_of(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = bootstrap(settings)
    try:
        yield runtime
    finally:
        await runtime.cache.close()
        await runtime.database.dispose()


async def test_one_holder_at_a_time_until_its_lease_runs_out_or_is_given_back(
    settings: Settings,
) -> None:
    clock = FrozenClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC))
    async with runtime_of(settings) as runtime:

        def holder(name: str) -> Leases:
            return Leases(
                sessions=runtime.write_sessions,
                read_sessions=runtime.write_sessions,
                clock=clock,
                holder=name,
                seconds=15,
            )

        first, second = holder("replica-1"), holder("replica-2")
        assert await first.acquire("ingest.watch_uploads")
        assert not await second.acquire("ingest.watch_uploads")
        assert await second.acquire("devices.monitor_devices")  # leases are by name
        clock.advance(seconds=10)
        assert await first.acquire("ingest.watch_uploads")  # renewed: 15 s from now
        clock.advance(seconds=10)
        assert not await second.acquire("ingest.watch_uploads")
        assert await second.wait_before_trying("ingest.watch_uploads") > 0
        clock.advance(seconds=6)  # the holder stopped renewing: its lease ran out
        assert await second.acquire("ingest.watch_uploads")
        assert not await first.acquire("ingest.watch_uploads")
        await second.release("ingest.watch_uploads")
        assert await first.wait_before_trying("ingest.watch_uploads") == 0
        assert await first.acquire("ingest.watch_uploads")


async def test_a_singleton_loop_runs_in_one_replica_and_moves_when_that_one_stops(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"lease_seconds": 1.5})
    running: dict[str, int] = {}

    def probe(replica: str) -> Context:
        async def sweep(*, stop: asyncio.Event) -> None:
            running[replica] = running.get(replica, 0) + 1
            try:
                await stop.wait()
            finally:
                running[replica] -= 1

        return Context(name="probe", singletons=(sweep,))

    # Each lifecycle closes its own runtime when it stops.
    lifecycles = {
        replica: Lifecycle(bootstrap(settings), [probe(replica)]) for replica in ("first", "second")
    }
    stopped: set[str] = set()
    try:
        for lifecycle in lifecycles.values():
            await lifecycle.start(migrate_first=False, workers=True)

        async def one_runs() -> bool:
            return sum(running.values()) == 1

        assert await eventually(one_runs, timeout=10)
        await asyncio.sleep(2 * settings.lease_seconds)  # renewals keep it where it is
        assert sum(running.values()) == 1
        [leader] = [replica for replica, count in running.items() if count]
        await lifecycles[leader].stop(grace_seconds=5)
        stopped.add(leader)
        [follower] = set(lifecycles) - stopped

        async def moved() -> bool:
            return running.get(follower, 0) == 1

        assert await eventually(moved, timeout=10)
        assert sum(running.values()) == 1
    finally:
        for replica, lifecycle in lifecycles.items():
            if replica not in stopped:
                await lifecycle.stop(grace_seconds=5)
