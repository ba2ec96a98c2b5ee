"""Feeding the audit log the way contexts do, reading it back, and tampering with it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, text

from medcloud.audit import service
from medcloud.audit.models import AuditEntry
from medcloud.audit.schemas import VerificationRead
from medcloud.platform.audit import ActorType, AuditRecorded, Outcome
from medcloud.platform.runtime import Runtime
from tests.support.client import Api, eventually

ST_MARY = "org-stmary"
OTHER_ORG = "org-elsewhere"
T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)

# What an attacker with DDL rights drops first: the triggers that keep the tables append-only.
DROP_GUARDS = {
    "sqlite": [
        f"DROP TRIGGER IF EXISTS {table}_no_{op}"
        for table in ("audit_entry", "audit_checkpoint")
        for op in ("update", "delete")
    ],
    "postgresql": [
        f"DROP TRIGGER IF EXISTS {table}_no_{what} ON {table}"
        for table in ("audit_entry", "audit_checkpoint")
        for what in ("change", "truncate")
    ],
}


def runtime(api: Api) -> Runtime:
    value: Runtime = api.app.state.runtime
    return value


def fact(i: int, **changes: Any) -> AuditRecorded:
    """The i-th thing that happened at St Mary's: Alice reading patient-7's readings."""
    values: dict[str, Any] = {
        "organisation_id": ST_MARY,
        "occurred_at": T0 + dt.timedelta(minutes=i),
        "actor_type": ActorType.USER,
        "actor_id": "u-alice",
        "action": "readings.read",
        "object_type": "device",
        "object_id": f"device-{i}",
        "patient_id": "patient-7",
        "outcome": Outcome.SUCCESS,
        "source_ip": "10.0.0.7",
        "request_id": f"req-{i}",
        "detail": {"count": i},
    }
    return AuditRecorded(**(values | changes))


async def record(api: Api, *events: AuditRecorded) -> None:
    """Publish events through a unit of work, as any context does."""
    async with runtime(api).uow() as uow:
        for event in events:
            uow.publish(event)
        await uow.commit()


async def count_entries(api: Api) -> int:
    async with runtime(api).read_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


async def wait_for_entries(api: Api, count: int) -> None:
    """Wait until the consumer has chained `count` entries (delivery is asynchronous)."""

    async def enough() -> bool:
        return await count_entries(api) >= count

    await eventually(enough)
    assert await count_entries(api) == count


async def record_and_wait(api: Api, n: int, **changes: Any) -> None:
    await record(api, *(fact(i, **changes) for i in range(1, n + 1)))
    await wait_for_entries(api, n)


async def tamper(api: Api, *statements: str, params: dict[str, Any] | None = None) -> None:
    """Run SQL on the audit tables behind the application's back, guards dropped first."""
    engine = runtime(api).database.writer
    async with engine.begin() as connection:
        for guard in DROP_GUARDS[engine.dialect.name]:
            await connection.execute(text(guard))
        for statement in statements:
            await connection.execute(text(statement), params or {})


async def verify(api: Api) -> VerificationRead:
    """Verify through the service function."""
    async with runtime(api).read_sessions() as session:
        return await service.verify_chain(
            session=session, settings=runtime(api).settings, batch_size=2
        )
