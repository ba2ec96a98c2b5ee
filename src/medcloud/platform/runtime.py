"""What the composition root builds once per process and every entrypoint shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.platform.bus import Bus
from medcloud.platform.cache import Cache
from medcloud.platform.clock import Clock
from medcloud.platform.db import Database
from medcloud.platform.directory import DeviceDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.outbox import OutboxRelay
from medcloud.platform.security import TokenService
from medcloud.platform.uow import UnitOfWork


@dataclass
class Runtime:
    """The process's dependencies, built by `medcloud.bootstrap.bootstrap`."""

    settings: Settings
    database: Database
    write_sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    bus: Bus
    cache: Cache
    clock: Clock
    metrics: Metrics
    tokens: TokenService
    relay: OutboxRelay
    devices: DeviceDirectory

    def uow(self) -> UnitOfWork:
        """Start a new unit of work; its commit wakes the local relay."""
        return UnitOfWork(self.write_sessions, clock=self.clock, on_commit=self.relay.wake)

    def dependencies(self) -> dict[str, Any]:
        """Name what handlers and hooks may ask for as keyword-only parameters."""
        return {
            "settings": self.settings,
            "uow_factory": self.uow,
            "read_sessions": self.read_sessions,
            "clock": self.clock,
            "metrics": self.metrics,
            "cache": self.cache,
            "devices": self.devices,
            "tokens": self.tokens,
        }
