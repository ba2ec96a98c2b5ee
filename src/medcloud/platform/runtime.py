"""What the composition root builds once per process and every entrypoint shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.platform.bus import Bus
from medcloud.platform.cache import Cache
from medcloud.platform.clock import Clock
from medcloud.platform.db import Database
from medcloud.platform.directory import (
    CareDirectory,
    DeviceDirectory,
    PatientDirectory,
    ReadingHistory,
)
from medcloud.platform.metrics import Metrics
from medcloud.platform.objects import ObjectStore
from medcloud.platform.outbox import OutboxRelay
from medcloud.platform.security import TokenService, fetch_jwks
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
    patients: PatientDirectory
    care: CareDirectory
    readings: ReadingHistory
    objects: ObjectStore
    services: dict[str, Any] = field(default_factory=dict)
    """Services a context starts and owns (the ingest writer), by name. Start hooks put them
    here; handlers and loops may then ask for them by that name, routes read them here."""

    _keys_fetched_at: float = field(default=0.0, repr=False)

    async def refresh_token_keys(self, *, min_interval_seconds: float = 30.0) -> bool:
        """Re-read the JWKS of a verify-only service, at most once per interval; tell if it did."""
        if not self.settings.jwt_jwks_url:
            return False
        now = time.monotonic()
        if self._keys_fetched_at and now - self._keys_fetched_at < min_interval_seconds:
            return False
        self._keys_fetched_at = now
        self.tokens.replace_keys(await fetch_jwks(self.settings.jwt_jwks_url))
        return True

    def uow(self) -> UnitOfWork:
        """Start a new unit of work; its commit hands its events to the local relay."""
        return UnitOfWork(self.write_sessions, clock=self.clock, on_commit=self.relay.committed)

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
            "patients": self.patients,
            "care": self.care,
            "readings": self.readings,
            "tokens": self.tokens,
            "objects": self.objects,
            "services": self.services,
        } | self.services
