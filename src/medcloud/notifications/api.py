"""HTTP routes of the notifications context."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse

from medcloud.notifications import inbox, rosters
from medcloud.notifications.notifier import Notifier
from medcloud.notifications.schemas import (
    AcknowledgedRead,
    EscalationRead,
    InboxItemRead,
    InboxPage,
    OrganisationIn,
    OrganisationRead,
    PolicyIn,
    PolicyPage,
    PolicyRead,
    RecipientIn,
    RecipientRead,
    ShiftIn,
    ShiftPage,
    ShiftRead,
    WebhookCreated,
    WebhookIn,
    WebhookPage,
)
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.http import Authorize, RuntimeDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.runtime import Runtime
from medcloud.platform.security import UserPrincipal
from medcloud.platform.types import Timestamp

router = APIRouter(tags=["notifications"])

Token = Annotated[str, Query(min_length=20, max_length=1000)]


def _notifier(runtime: Runtime) -> Notifier:
    return runtime.services.require(Notifier)


@router.get(
    "/api/v1/alerts/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def alert_stream(
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALERTS_READ)],
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Live alarm changes as Server-Sent Events, for the alarms the user may see.

    Each event's `id` is a position in the stream: reconnecting with `Last-Event-ID` resumes
    right after it (within two days), so a ward display misses nothing across a network blip.
    """
    resume: int | None = None
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise Invalid(
                "Last-Event-ID is not a position in this stream",
                errors=[FieldError("header.last-event-id", "a number from an earlier event")],
            )
        resume = int(last_event_id)
    events = inbox.stream(
        uow_factory=runtime.uow,
        care=runtime.care,
        settings=runtime.settings,
        notifier=runtime.services.get(Notifier),
        principal=principal,
        last_event_id=resume,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/api/v1/alerts/{alert_id}/notifications", response_model=EscalationRead)
async def alert_notifications(
    alert_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALERTS_READ)],
) -> EscalationRead:
    """Who was told of an alarm, over what, when, and what became of each message."""
    return await inbox.escalation_of(
        uow=uow, care=runtime.care, principal=principal, alert_id=alert_id
    )


@router.get("/api/v1/notifications/inbox", response_model=InboxPage)
async def list_inbox(
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.INBOX_READ)],
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> InboxPage:
    """The signed-in user's in-app inbox, newest first."""
    return await inbox.list_inbox(
        uow=uow, principal=principal, unread=unread, limit=limit, cursor=cursor
    )


@router.post("/api/v1/notifications/inbox/{item_id}/read", response_model=InboxItemRead)
async def read_inbox_item(
    item_id: str,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.INBOX_READ)],
) -> InboxItemRead:
    """Mark one's own inbox item read."""
    return await inbox.mark_read(uow=uow, principal=principal, item_id=item_id)


@router.get("/api/v1/notifications/recipients/{user_id}", response_model=RecipientRead)
async def get_recipient(
    user_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATION_PREFERENCES)],
) -> RecipientRead:
    """How a user is reached: one's own details, or anyone's for an admin."""
    return await rosters.get_recipient(
        uow=uow, care=runtime.care, principal=principal, user_id=user_id
    )


@router.put("/api/v1/notifications/recipients/{user_id}", response_model=RecipientRead)
async def put_recipient(
    user_id: str,
    body: RecipientIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATION_PREFERENCES)],
) -> RecipientRead:
    """Set addresses, language, time zone, channels by priority and quiet hours."""
    return await rosters.put_recipient(
        uow=uow, care=runtime.care, principal=principal, user_id=user_id, body=body
    )


@router.get("/api/v1/on-call", response_model=ShiftPage)
async def list_shifts(
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ROSTER_READ)],
    ward_id: Annotated[str | None, Query(max_length=36)] = None,
    start: Timestamp | None = None,
    end: Timestamp | None = None,
) -> ShiftPage:
    """The on-call roster: shifts overlapping [start, end) (default: the next 24 hours)."""
    return await rosters.list_shifts(
        uow=uow, principal=principal, ward_id=ward_id, start=start, end=end
    )


@router.post("/api/v1/on-call", response_model=ShiftRead, status_code=201)
async def add_shift(
    body: ShiftIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> ShiftRead:
    """Put someone on call for a duty."""
    return await rosters.add_shift(
        uow=uow, care=runtime.care, patients=runtime.patients, principal=principal, body=body
    )


@router.delete("/api/v1/on-call/{shift_id}", status_code=204)
async def delete_shift(
    shift_id: str,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> Response:
    """Take a shift off the roster."""
    await rosters.delete_shift(uow=uow, principal=principal, shift_id=shift_id)
    return Response(status_code=204)


@router.get("/api/v1/escalation-policies", response_model=PolicyPage)
async def list_policies(
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ROSTER_READ)],
) -> PolicyPage:
    """Escalation policies of the organisation and its wards, and the defaults."""
    return await rosters.list_policies(uow=uow, principal=principal)


@router.put("/api/v1/escalation-policies", response_model=PolicyRead)
async def put_policy(
    body: PolicyIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> PolicyRead:
    """Set the escalation steps of one priority for the organisation or one ward."""
    return await rosters.put_policy(
        uow=uow, patients=runtime.patients, principal=principal, body=body
    )


@router.delete("/api/v1/escalation-policies/{policy_id}", status_code=204)
async def delete_policy(
    policy_id: str,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> Response:
    """Drop a policy; its alarms use the organisation's policy or the default."""
    await rosters.delete_policy(uow=uow, principal=principal, policy_id=policy_id)
    return Response(status_code=204)


@router.get("/api/v1/notifications/settings", response_model=OrganisationRead)
async def get_settings(
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> OrganisationRead:
    """The organisation's fallback contact."""
    return await rosters.get_organisation(uow=uow, principal=principal)


@router.put("/api/v1/notifications/settings", response_model=OrganisationRead)
async def put_settings(
    body: OrganisationIn,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> OrganisationRead:
    """Set the fallback contact, told when nobody is on call or a channel is down."""
    return await rosters.put_organisation(uow=uow, principal=principal, body=body)


@router.get("/api/v1/webhooks", response_model=WebhookPage)
async def list_webhooks(
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> WebhookPage:
    """The organisation's webhook endpoints."""
    return await rosters.list_webhooks(uow=uow, principal=principal)


@router.post("/api/v1/webhooks", response_model=WebhookCreated, status_code=201)
async def add_webhook(
    body: WebhookIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> WebhookCreated:
    """Register an endpoint for signed alarm events (see docs/webhooks.md)."""
    return await rosters.add_webhook(
        uow=uow, settings=runtime.settings, principal=principal, body=body
    )


@router.delete("/api/v1/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: str,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.NOTIFICATIONS_MANAGE)],
) -> Response:
    """Remove a webhook endpoint."""
    await rosters.delete_webhook(uow=uow, principal=principal, webhook_id=webhook_id)
    return Response(status_code=204)


_CONFIRM = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acknowledge alarm</title>
<body style="font-family:sans-serif;max-width:30em;margin:3em auto">
<h1>Acknowledge this alarm?</h1>
<p>Acknowledging stops the escalation and tells the others who were paged.</p>
<form method="post" action="?token={token}"><button type="submit"
 style="font-size:1.4em;padding:.5em 1.5em">Acknowledge</button></form></body></html>"""
_DONE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Acknowledged</title>
<body style="font-family:sans-serif;max-width:30em;margin:3em auto">
<h1>Alarm acknowledged</h1><p><a href="{link}">Open the alarm</a> (sign-in needed).</p>
</body></html>"""


@router.get(
    "/api/v1/notifications/acknowledge",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}},
)
async def acknowledge_page(token: Token) -> HTMLResponse:
    """The page an acknowledge link in an email opens: it asks before acting, so a mail
    scanner that follows links acknowledges nothing."""
    return HTMLResponse(_CONFIRM.format(token=html.escape(token, quote=True)))


@router.post(
    "/api/v1/notifications/acknowledge",
    response_model=AcknowledgedRead,
    responses={200: {"content": {"text/html": {}}}},
)
async def acknowledge(token: Token, request: Request, uow: UowDep, runtime: RuntimeDep) -> Any:
    """Acknowledge an alarm with a signed, single-use, expiring link from an email."""
    done = await inbox.acknowledge_with_link(uow=uow, notifier=_notifier(runtime), token=token)
    if "text/html" in request.headers.get("accept", ""):
        link = html.escape(f"/api/v1/alerts/{done.alert_id}", quote=True)
        return HTMLResponse(_DONE.format(link=link))
    return done


@router.post("/api/v1/notifications/sms/status", status_code=204)
async def sms_status(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    x_twilio_signature: Annotated[str, Header(max_length=200)] = "",
) -> Response:
    """The SMS provider's delivery report (signed by the provider)."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    public = runtime.settings.notifications.public_url.rstrip("/")
    await inbox.sms_status(
        uow=uow,
        settings=runtime.settings,
        url=f"{public}/api/v1/notifications/sms/status",
        form=fields,
        signature=x_twilio_signature,
    )
    return Response(status_code=204)
