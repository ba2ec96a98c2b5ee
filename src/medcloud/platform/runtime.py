"""What the composition root builds once per process and every entrypoint shares."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.platform.bus import Bus
from medcloud.platform.cache import Cache
from medcloud.platform.clock import Clock
from medcloud.platform.db import Database
from medcloud.platform.directory import (
    AlarmHistory,
    CareDirectory,
    DeviceDirectory,
    EquipmentRegistry,
    PatientDirectory,
    PatientRegistry,
    ReadingHistory,
)
from medcloud.platform.metrics import Metrics
from medcloud.platform.objects import ObjectStore
from medcloud.platform.outbox import OutboxRelay
from medcloud.platform.ratelimit import RateLimiter
from medcloud.platform.security import TokenService, fetch_jwks
from medcloud.platform.uow import UnitOfWork

T = TypeVar("T")


class Services:
    """What contexts provide for the process, found by type: routes ask for `Intake`, not
    for a name. Handlers and hooks may also take one as a parameter named after its class in
    snake case (`notifier: Notifier`)."""

    def __init__(self) -> None:
        self._by_type: dict[type[Any], Any] = {}

    def provide(self, service: object) -> None:
        """Offer `service` to the process, in place of any other of its type."""
        self._by_type[type(service)] = service

    def get(self, kind: type[T]) -> T | None:
        """Return the service of type `kind`, None when no context provides it here."""
        found = self._by_type.get(kind)
        return found if isinstance(found, kind) else None

    def require(self, kind: type[T]) -> T:
        """Return the service of type `kind`; a process without it is misassembled."""
        found = self.get(kind)
        if found is None:
            raise LookupError(f"no context of this process provides {kind.__name__}")
        return found

    def by_name(self) -> dict[str, Any]:
        """The services under their parameter names, for handlers and hooks."""
        return {_snake(kind.__name__): service for kind, service in self._by_type.items()}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class Runtime:
    """The process's dependencies, built by `medcloud.bootstrap.bootstrap`."""

    settings: Settings
    database: Database
    write_sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    """Queries that must see every commit: look-ups before a write, a thing just made."""
    replica_sessions: async_sessionmaker[AsyncSession]
    """Lists, charts and reports, which may lag: the read replica's when one is configured."""
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
    equipment: EquipmentRegistry
    patient_registry: PatientRegistry
    objects: ObjectStore
    alarm_history: AlarmHistory
    """Alarms and NEWS2 scores of a period, read back (the reports)."""
    rate_limiter: RateLimiter | None = None
    """Requests per caller at the HTTP edge; None when limits are off."""
    services: Services = field(default_factory=lambda: Services())
    """What contexts provide for the process (the ingest intake, the notifier), by type."""

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
        return UnitOfWork(self.write_sessions, clock=self.clock, relay=self.relay)

    def dependencies(self) -> dict[str, Any]:
        """Name what handlers and hooks may ask for as keyword-only parameters."""
        return {
            "settings": self.settings,
            "uow_factory": self.uow,
            "read_sessions": self.read_sessions,
            "replica_sessions": self.replica_sessions,
            "clock": self.clock,
            "metrics": self.metrics,
            "cache": self.cache,
            "devices": self.devices,
            "patients": self.patients,
            "care": self.care,
            "readings": self.readings,
            "equipment": self.equipment,
            "patient_registry": self.patient_registry,
            "tokens": self.tokens,
            "objects": self.objects,
            "alarm_history": self.alarm_history,
            "services": self.services,
        } | self.services.by_name()
