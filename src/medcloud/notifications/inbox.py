"""Use cases a person meets: the live alarm stream, the in-app inbox, an alarm's delivery record,
the acknowledge link in an email, and the SMS provider's delivery reports."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping

import structlog
from sqlalchemy import func, select, update

from medcloud.config import Settings
from medcloud.notifications import repository, service
from medcloud.notifications.channels import parse_status_callback
from medcloud.notifications.events import LinkAcknowledged
from medcloud.notifications.models import AlarmEscalation, Delivery, InboxItem, LinkUse
from medcloud.notifications.notifier import Notifier
from medcloud.notifications.schemas import (
    AcknowledgedRead,
    DeliveryRead,
    EscalationRead,
    InboxItemRead,
    InboxPage,
)
from medcloud.notifications.signing import open_link, verify_twilio_signature
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareDirectory
from medcloud.platform.errors import Conflict, Forbidden, NotFound
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.policy import ensure_in_care_scope
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 15.0
FEED_PAGE = 200


async def stream(
    *,
    uow_factory: UnitOfWorkFactory,
    care: CareDirectory,
    settings: Settings,
    notifier: Notifier | None,
    principal: UserPrincipal,
    last_event_id: int | None,
) -> AsyncIterator[str]:
    """Yield Server-Sent Events of alarm changes the user may see, from `last_event_id` on.

    Without a `Last-Event-ID` the stream starts now. The care scope is read again on every
    pass, so a nurse moved to another ward stops seeing her old ward's alarms at once. The
    server ends the generator (cancelling it) when the client goes away.
    """
    async with uow_factory() as uow:
        after = (
            last_event_id if last_event_id is not None else await repository.last_seq(uow.session)
        )
    yield f"retry: 3000\nid: {after}\n\n"
    quiet = 0.0
    poll = settings.notifications.stream_poll_seconds
    while True:
        scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
        async with uow_factory() as uow:
            rows = await repository.feed_after(
                uow.session,
                principal.organisation_id,
                after,
                None if scope.whole_organisation else scope.patient_ids,
                FEED_PAGE,
            )
        for row in rows:
            after = row.seq
            yield f"id: {row.seq}\nevent: {row.type}\ndata: {row.body}\n\n"
        if len(rows) == FEED_PAGE:
            continue
        if rows:
            quiet = 0.0
        elif quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"
        started = asyncio.get_running_loop().time()
        if notifier is not None:
            await notifier.wait_feed(poll)
        else:
            await asyncio.sleep(poll)
        quiet += asyncio.get_running_loop().time() - started


async def list_inbox(
    *,
    uow: UnitOfWork,
    principal: UserPrincipal,
    unread: bool,
    limit: int,
    cursor: str | None,
) -> InboxPage:
    """The user's own inbox, newest first, with the count of unread items."""
    after = decode_cursor(cursor) if cursor else None
    async with uow:
        rows = await repository.inbox(
            uow.session, principal.user_id, unread=unread, after=after, limit=limit
        )
        count = await uow.session.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.user_id == principal.user_id, InboxItem.read_at.is_(None))
        )
    items, next_cursor = page_of(rows, limit, lambda row: (row.created_at, row.id))
    return InboxPage(
        items=[InboxItemRead.model_validate(row) for row in items],
        next_cursor=next_cursor,
        unread=int(count or 0),
    )


async def mark_read(*, uow: UnitOfWork, principal: UserPrincipal, item_id: str) -> InboxItemRead:
    """Mark an inbox item read (only one's own)."""
    async with uow:
        row = await uow.session.get(InboxItem, item_id)
        if row is None or row.user_id != principal.user_id:
            raise NotFound("inbox item not found")
        if row.read_at is None:
            row.read_at = uow.clock.now()
        await uow.commit()
    return InboxItemRead.model_validate(row)


async def escalation_of(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, alert_id: str
) -> EscalationRead:
    """How an alarm's escalation stands and every message sent about it (audited)."""
    async with uow:
        alarm = await uow.session.get(AlarmEscalation, alert_id)
        if alarm is None or alarm.organisation_id != principal.organisation_id:
            raise NotFound("alert not found")
        scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
        ensure_in_care_scope(scope, alarm.patient_id, "alert")
        rows = await repository.deliveries_of(uow.session, alert_id)
        uow.publish(
            audit_record(
                principal,
                "notifications.deliveries.read",
                occurred_at=uow.clock.now(),
                object_type="alert",
                object_id=alert_id,
                patient_id=alarm.patient_id,
            )
        )
        await uow.commit()
    return EscalationRead(
        alert_id=alarm.alert_id,
        state=alarm.state,
        priority=alarm.priority,
        step=alarm.step,
        round=alarm.round,
        next_at=alarm.next_at,
        stopped_at=alarm.stopped_at,
        stopped_by=alarm.stopped_by,
        deliveries=[DeliveryRead.model_validate(row) for row in rows],
    )


async def acknowledge_with_link(
    *, uow: UnitOfWork, notifier: Notifier, token: str
) -> AcknowledgedRead:
    """Use a signed acknowledge link, once: escalation stops at once, and the alarm is
    acknowledged in the alarm list as the person the link was sent to."""
    now = uow.clock.now()
    claims = open_link(notifier.link_key, token, now=now.timestamp())
    if claims is None:
        raise Forbidden("the link is not valid or has expired")
    async with uow:
        if await uow.session.get(LinkUse, claims.nonce) is not None:
            raise Conflict("the link was used already")
        alarm = await uow.session.get(AlarmEscalation, claims.alert_id)
        if alarm is None:
            raise NotFound("alert not found")
        uow.session.add(
            LinkUse(
                nonce=claims.nonce, alert_id=claims.alert_id, user_id=claims.user_id, used_at=now
            )
        )
        await service.stop(uow, claims.alert_id, state="acknowledged", actor_id=claims.user_id)
        uow.publish(
            LinkAcknowledged(
                organisation_id=alarm.organisation_id,
                alert_id=claims.alert_id,
                user_id=claims.user_id,
            )
        )
        await uow.commit()
    log.info("notification.link_acknowledged", alert_id=claims.alert_id)
    return AcknowledgedRead(alert_id=claims.alert_id)


async def sms_status(
    *,
    uow: UnitOfWork,
    settings: Settings,
    url: str,
    form: Mapping[str, str],
    signature: str,
) -> None:
    """Record the SMS provider's report on a message (delivered or failed), if it is signed."""
    token = settings.notifications.sms_auth_token
    if token is None or not verify_twilio_signature(token.get_secret_value(), url, form, signature):
        raise Forbidden("the delivery report is not signed by the SMS provider")
    sid, status, reason = parse_status_callback(form)
    async with uow:
        now: dt.datetime = uow.clock.now()
        values: dict[str, object] = {"updated_at": now}
        if status == "delivered":
            values |= {"status": "delivered", "delivered_at": now}
        elif status == "failed":
            values |= {"status": "failed", "reason": (reason or "undelivered")[:500]}
        else:
            return
        await uow.session.execute(
            update(Delivery)
            .where(
                Delivery.provider_id == sid,
                Delivery.channel == "sms",
                Delivery.status.in_(("sent", "sending")),
            )
            .values(**values)
        )
        await uow.commit()
