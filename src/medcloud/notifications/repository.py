"""Queries over the notifications context's tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Select, Table, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.notifications.escalation import DEFAULT_CHAINS, Chain
from medcloud.notifications.models import (
    ESCALATING,
    AlarmEscalation,
    Breaker,
    Delivery,
    FeedEntry,
    InboxItem,
    OrganisationSettings,
    Policy,
    Recipient,
    Shift,
    Webhook,
)
from medcloud.platform.db import dialect_name, upsert
from medcloud.platform.paging import before

DELIVERIES = cast(Table, Delivery.__table__)
DONE = ("sent", "delivered")


def _locked(session: AsyncSession, query: Select[Any]) -> Select[Any]:
    # Several workers share the due work on PostgreSQL; SQLite has one writer anyway.
    if dialect_name(session) == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


async def chain_for(
    session: AsyncSession, organisation_id: str, ward_id: str | None, priority: str
) -> Chain:
    """The escalation chain for an alarm: the ward's policy, else the organisation's, else the
    built-in one."""
    keys = [ward_id, ""] if ward_id else [""]
    rows = (
        await session.scalars(
            select(Policy).where(
                Policy.organisation_id == organisation_id,
                Policy.priority == priority,
                Policy.ward_key.in_(keys),
            )
        )
    ).all()
    for key in keys:
        for row in rows:
            if row.ward_key == key:
                return Chain.from_json(row.steps, row.repeat_after_seconds)
    return DEFAULT_CHAINS.get(priority, DEFAULT_CHAINS["low"])


async def on_call(
    session: AsyncSession, organisation_id: str, ward_id: str | None, duty: str, now: dt.datetime
) -> list[str]:
    """The users holding `duty` now in the ward, or organisation-wide."""
    ward = (
        Shift.ward_id.is_(None)
        if ward_id is None
        else or_(Shift.ward_id == ward_id, Shift.ward_id.is_(None))
    )
    rows = await session.scalars(
        select(Shift.user_id)
        .where(
            Shift.organisation_id == organisation_id,
            Shift.duty == duty,
            ward,
            Shift.starts_at <= now,
            Shift.ends_at > now,
        )
        .distinct()
        .order_by(Shift.user_id)
    )
    return list(rows.all())


async def pages_anyone(session: AsyncSession, organisation_id: str) -> bool:
    """Tell whether the organisation has set up paging: a roster or a fallback contact."""
    shift = await session.scalar(
        select(Shift.id).where(Shift.organisation_id == organisation_id).limit(1)
    )
    return shift is not None or await session.get(OrganisationSettings, organisation_id) is not None


async def recipients(session: AsyncSession, user_ids: Iterable[str]) -> dict[str, Recipient]:
    """The contact details of each user that has any."""
    ids = list(user_ids)
    if not ids:
        return {}
    rows = await session.scalars(select(Recipient).where(Recipient.user_id.in_(ids)))
    return {row.user_id: row for row in rows}


async def organisation(session: AsyncSession, organisation_id: str) -> OrganisationSettings | None:
    """The organisation's fallback contact, if it set one."""
    return await session.get(OrganisationSettings, organisation_id)


async def webhooks(session: AsyncSession, organisation_id: str) -> list[Webhook]:
    """The organisation's webhook endpoints."""
    rows = await session.scalars(
        select(Webhook).where(Webhook.organisation_id == organisation_id).order_by(Webhook.id)
    )
    return list(rows.all())


async def add_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Queue deliveries; one whose idempotency key exists already is the same message, kept."""
    if not rows:
        return
    statement = upsert(session)(DELIVERIES).on_conflict_do_nothing(
        index_elements=["idempotency_key"]
    )
    await session.execute(statement, list(rows))


async def due_alarms(session: AsyncSession, now: dt.datetime, limit: int) -> list[AlarmEscalation]:
    """Escalating alarms whose next step is due, oldest first, locked for this worker."""
    query = (
        select(AlarmEscalation)
        .where(AlarmEscalation.state == ESCALATING, AlarmEscalation.next_at <= now)
        .order_by(AlarmEscalation.next_at)
        .limit(limit)
    )
    return list((await session.scalars(_locked(session, query))).all())


async def due_deliveries(session: AsyncSession, now: dt.datetime, limit: int) -> list[Delivery]:
    """Queued deliveries that are due, and claimed ones whose worker died, locked for this one."""
    query = (
        select(Delivery)
        .where(
            or_(
                (Delivery.status == "queued") & (Delivery.next_attempt_at <= now),
                (Delivery.status == "sending") & (Delivery.claimed_until < now),
            )
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    return list((await session.scalars(_locked(session, query))).all())


async def escalations(
    session: AsyncSession, alert_ids: Iterable[str]
) -> dict[str, AlarmEscalation]:
    """The escalation of each alarm that has one."""
    ids = list(alert_ids)
    if not ids:
        return {}
    rows = await session.scalars(select(AlarmEscalation).where(AlarmEscalation.alert_id.in_(ids)))
    return {row.alert_id: row for row in rows}


async def cancel_pending(session: AsyncSession, alert_id: str, now: dt.datetime) -> None:
    """Cancel an alarm's messages that have not gone out yet."""
    await session.execute(
        update(Delivery)
        .where(
            Delivery.alert_id == alert_id,
            Delivery.kind == "alarm",
            Delivery.status == "queued",
        )
        .values(status="cancelled", reason="alarm no longer escalating", updated_at=now)
    )


async def reached(session: AsyncSession, alert_id: str) -> list[Delivery]:
    """The messages about an alarm that reached someone, one per person and channel."""
    rows = await session.scalars(
        select(Delivery)
        .where(
            Delivery.alert_id == alert_id,
            Delivery.kind == "alarm",
            Delivery.status.in_(DONE),
            Delivery.user_id.is_not(None),
        )
        .order_by(Delivery.created_at)
    )
    return list(rows.all())


async def deliveries_of(session: AsyncSession, alert_id: str) -> list[Delivery]:
    """Every message about an alarm, oldest first."""
    rows = await session.scalars(
        select(Delivery)
        .where(Delivery.alert_id == alert_id)
        .order_by(Delivery.created_at, Delivery.id)
    )
    return list(rows.all())


async def breakers(session: AsyncSession, keys: Iterable[str]) -> dict[str, Breaker]:
    """The circuits among `keys` that exist (a missing one never failed), locked, by key.

    Locked in key order, so two workers recording outcomes on the same circuits wait for each
    other rather than deadlock.
    """
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    query = select(Breaker).where(Breaker.key.in_(wanted)).order_by(Breaker.key)
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
    return {row.key: row for row in await session.scalars(query)}


async def deliveries(session: AsyncSession, ids: Iterable[str]) -> dict[str, Delivery]:
    """The deliveries with these ids, by id."""
    wanted = list(ids)
    if not wanted:
        return {}
    rows = await session.scalars(select(Delivery).where(Delivery.id.in_(wanted)))
    return {row.id: row for row in rows}


async def open_breakers(session: AsyncSession, keys: Iterable[str]) -> dict[str, Breaker]:
    """The circuits among `keys` that are open or half-open."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await session.scalars(
        select(Breaker).where(Breaker.key.in_(wanted), Breaker.state != "closed")
    )
    return {row.key: row for row in rows}


async def feed_after(
    session: AsyncSession,
    organisation_id: str,
    after: int,
    patients: frozenset[str] | None,
    limit: int,
) -> list[FeedEntry]:
    """Feed entries of the organisation after `after`, within the patients (None: all)."""
    query = select(FeedEntry).where(
        FeedEntry.organisation_id == organisation_id, FeedEntry.seq > after
    )
    if patients is not None:
        query = query.where(FeedEntry.patient_id.in_(patients))
    rows = await session.scalars(query.order_by(FeedEntry.seq).limit(limit))
    return list(rows.all())


async def last_seq(session: AsyncSession) -> int:
    """The newest feed entry's number (0: none yet)."""
    return int(await session.scalar(select(func.max(FeedEntry.seq))) or 0)


async def inbox(
    session: AsyncSession,
    user_id: str,
    *,
    unread: bool,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[InboxItem]:
    """A user's inbox, newest first: `limit + 1` rows from the keyset position `after`."""
    query = select(InboxItem).where(InboxItem.user_id == user_id)
    if unread:
        query = query.where(InboxItem.read_at.is_(None))
    if after is not None:
        query = query.where(before(InboxItem.created_at, InboxItem.id, after))
    rows = await session.scalars(
        query.order_by(InboxItem.created_at.desc(), InboxItem.id.desc()).limit(limit + 1)
    )
    return list(rows.all())


async def shifts(
    session: AsyncSession,
    organisation_id: str,
    *,
    ward_id: str | None,
    start: dt.datetime,
    end: dt.datetime,
) -> list[Shift]:
    """Shifts that overlap [start, end), by start."""
    query = select(Shift).where(
        Shift.organisation_id == organisation_id, Shift.starts_at < end, Shift.ends_at > start
    )
    if ward_id is not None:
        query = query.where(or_(Shift.ward_id == ward_id, Shift.ward_id.is_(None)))
    rows = await session.scalars(query.order_by(Shift.starts_at, Shift.id))
    return list(rows.all())


async def policies(session: AsyncSession, organisation_id: str) -> list[Policy]:
    """The organisation's configured policies."""
    rows = await session.scalars(
        select(Policy)
        .where(Policy.organisation_id == organisation_id)
        .order_by(Policy.ward_key, Policy.priority)
    )
    return list(rows.all())
