"""What a bounded context offers the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from fastapi import APIRouter

from medcloud.config import Settings
from medcloud.platform.bus import Subscription
from medcloud.platform.errors import ErrorBody

Hook = Callable[..., Awaitable[None]]


@runtime_checkable
class Runs(Protocol):
    """A provided service that works until its process stops (the ingest writer)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, finish what was handed over, then return."""
        ...


def no_large_bodies(_settings: Settings) -> Sequence[tuple[str, int]]:
    return ()


@dataclass(frozen=True)
class Context:
    """A context's router, event subscriptions, migrations and lifecycle hooks.

    Hooks and handlers name their dependencies as keyword-only parameters (`uow_factory`,
    `settings`, `clock`, …); the composition root binds them.
    """

    name: str
    router: APIRouter | None = None
    subscriptions: Sequence[Subscription] = ()
    migrations: Path | None = None
    on_start: Sequence[Hook] = ()
    """Run once when a server or worker starts (after migrations)."""
    provides: Sequence[Callable[..., Awaitable[object]]] = ()
    """Build the services this context offers the process (see `Runtime.services`), once, as
    a server or worker starts. One with `run(stop)` is run by the process's lifecycle, which
    owns it: stopped with the process, after the loops that may still hand it work."""
    background: Sequence[Hook] = field(default_factory=tuple)
    """Long-running loops every worker process runs, started with the workers and stopped at
    shutdown: listeners, and loops that claim their work row by row."""
    singletons: Sequence[Hook] = field(default_factory=tuple)
    """Long-running loops of which one process at a time runs each, across every replica,
    while it holds the loop's lease (`platform/lease.py`): scans that would otherwise do the
    same work once per worker, or race."""
    large_bodies: Callable[[Settings], Sequence[tuple[str, int]]] = no_large_bodies
    """(path pattern, limit in bytes) of the routes whose bodies may exceed the edge's limit."""
    error_formats: Mapping[str, ErrorBody] = field(default_factory=dict)
    """Path prefix → how errors there are written, for paths speaking another standard than
    problem+json (FHIR's OperationOutcome under /fhir/)."""
