"""The unit of work: one transaction per use case, with its events written to the outbox in it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, cast

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.platform.clock import Clock
from medcloud.platform.db import dialect_name
from medcloud.platform.events import Envelope, Event
from medcloud.platform.models import OutboxMessage

# The table itself: a Core insert of many rows skips the ORM's per-row bookkeeping.
OUTBOX = cast(Table, OutboxMessage.__table__)
NOTIFY = text("NOTIFY outbox_message")


class LocalRelay(Protocol):
    """The relay of this process, as a unit of work hands it what it commits."""

    def own_lease(self) -> dt.timedelta | None:
        """How long events committed now are held for it; None while it is not running."""
        ...

    def committed(self, envelopes: Sequence[Envelope], *, claimed: bool = False) -> None:
        """Take the envelopes just committed (`claimed`: under its own lease)."""
        ...


class _NoRelay:
    def own_lease(self) -> dt.timedelta | None:
        return None

    def committed(self, envelopes: Sequence[Envelope], *, claimed: bool = False) -> None:
        pass


class UnitOfWork:
    """Open a transaction; `commit()` writes the collected events to the outbox and commits.

    Leaving the block without `commit()` rolls everything back, events included.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock,
        relay: LocalRelay | None = None,
    ) -> None:
        self._sessions = sessions
        self._relay = relay or _NoRelay()
        self.clock = clock
        self._events: list[Event] = []
        self._after_commit: list[Callable[[], None]] = []
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        """The session of this transaction."""
        if self._session is None:
            raise RuntimeError("use the unit of work inside `async with`")
        return self._session

    @property
    def dialect(self) -> str:
        """Name the SQL dialect of this transaction."""
        return dialect_name(self.session)

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        self._events = []
        self._after_commit = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self.session, None
        # close() rolls back whatever was not committed and detaches loaded objects without
        # expiring them, so a use case may still read what it loaded after leaving the block.
        await session.close()

    def publish(self, event: Event) -> None:
        """Have `event` leave through the outbox if, and only if, this transaction commits."""
        self._events.append(event)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    async def commit(self) -> None:
        """Write pending events to the outbox and commit the whole transaction; then hand the
        committed envelopes to the local relay."""
        envelopes: list[Envelope] = []
        lease = None
        if self._events:
            now = self.clock.now()
            # Held for this process's relay when it runs: it publishes them without claiming
            # them, and no other relay need look (see platform/outbox.py).
            lease = self._relay.own_lease()
            envelopes = [Envelope.wrap(event, occurred_at=now) for event in self._events]
            rows = [
                {
                    "event_id": envelope.id,
                    "routing_key": envelope.type,
                    "body": envelope.to_bytes().decode(),
                    "created_at": now,
                    "claimed_until": None if lease is None else now + lease,
                }
                for envelope in envelopes
            ]
            await self.session.execute(insert(OUTBOX), rows)
            if lease is None and self.dialect == "postgresql":
                # Delivered at commit, to the relays of every process.
                await self.session.execute(NOTIFY)
            self._events = []
        await self.session.commit()
        if envelopes:
            self._relay.committed(envelopes, claimed=lease is not None)
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()


UnitOfWorkFactory = Callable[[], UnitOfWork]
