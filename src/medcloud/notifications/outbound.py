"""What every queued message starts from: the channels this deployment can reach, a contact's
address on each, the link to an alarm, and the delivery row itself; and the signed POSTs of an
alarm change to the organisation's webhooks."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from medcloud.config import Settings
from medcloud.notifications.batch import Batch
from medcloud.notifications.models import OrganisationSettings, Recipient


def reachable(settings: Settings) -> tuple[str, ...]:
    """The external channels this deployment has a provider for."""
    config = settings.notifications
    found = []
    if config.sms_base_url:
        found.append("sms")
    if config.smtp_host or config.demo_mailbox_port:
        found.append("email")
    return tuple(found)


def alarm_link(settings: Settings, alert_id: str) -> str:
    """Where a person sees the alarm, behind sign-in."""
    return f"{settings.notifications.public_url.rstrip('/')}/api/v1/alerts/{alert_id}"


def address_of(contact: Recipient | OrganisationSettings, channel: str) -> str | None:
    """The contact's address on `channel`, if it has one."""
    if isinstance(contact, Recipient):
        return contact.email if channel == "email" else contact.phone
    return contact.fallback_email if channel == "email" else contact.fallback_phone


async def queue_webhooks(
    batch: Batch,
    settings: Settings,
    *,
    now: dt.datetime,
    event_type: str,
    organisation_id: str,
    alert_id: str,
    alert: dict[str, Any],
    suffix: str = "",
) -> int:
    """Queue one signed POST of this change to each of the organisation's endpoints."""
    hooks = await batch.webhooks(organisation_id)
    body = {"type": event_type, "alert": alert, "link": alarm_link(settings, alert_id)}
    batch.queue(
        [
            delivery_row(
                key=f"{alert_id}:{event_type}{suffix}:webhook:{hook.id}",
                organisation_id=organisation_id,
                alert_id=alert_id,
                kind=event_type,
                user_id=None,
                channel="webhook",
                address=hook.url,
                target=hook.id,
                now=now,
                payload=body,
            )
            for hook in hooks
        ],
    )
    return len(hooks)


def delivery_row(
    *,
    key: str,
    organisation_id: str,
    alert_id: str | None,
    kind: str,
    user_id: str | None,
    channel: str,
    address: str,
    target: str,
    now: dt.datetime,
    fallbacks: list[str] | None = None,
    locale: str = "en",
    step: int = 0,
    round_: int = 0,
    raised_at: dt.datetime | None = None,
    payload: dict[str, Any] | None = None,
    status: str = "queued",
) -> dict[str, Any]:
    """The row of one message to send (or, `delivered`, one shown in the app at once)."""
    done = status == "delivered"
    return {
        "id": str(uuid.uuid4()),
        "idempotency_key": key,
        "organisation_id": organisation_id,
        "alert_id": alert_id,
        "kind": kind,
        "user_id": user_id,
        "channel": channel,
        "address": address,
        "target": target,
        "fallbacks": fallbacks or [],
        "locale": locale,
        "payload": payload,
        "step": step,
        "round": round_,
        "status": status,
        "attempts": 1 if done else 0,
        "next_attempt_at": None if done else now,
        "claimed_until": None,
        "provider_id": None,
        "reason": None,
        "raised_at": raised_at,
        "created_at": now,
        "sent_at": now if done else None,
        "delivered_at": now if done else None,
        "updated_at": now,
    }
