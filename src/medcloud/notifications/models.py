"""Tables owned by the notifications context."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime
from medcloud.platform.sealing import Sealed

ESCALATING = "escalating"
"""An alarm whose steps are still being worked through (or wait for their repeat)."""


class Recipient(Base):
    """How to reach one user: addresses, language, time zone, channels by priority, quiet hours.

    The addresses are the notification service's own: it never reads the identity context's
    tables, and a pager number is not a sign-in detail.
    """

    __tablename__ = "notify_recipient"

    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    channels: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    """Ordered external channels per priority, e.g. {"high": ["sms", "email"]}; the in-app
    inbox is always told as well."""
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    """Local "HH:MM" from which medium and low priority reach only the inbox."""
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Shift(Base):
    """One on-call shift: a user holds a duty (primary, charge, physician …) in a ward."""

    __tablename__ = "notify_shift"
    __table_args__ = (Index("ix_notify_shift_ward_duty", "organisation_id", "ward_id", "duty"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    ward_id: Mapped[str | None] = mapped_column(String(36))
    """None: the duty covers every ward of the organisation (e.g. the physician on call)."""
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    duty: Mapped[str] = mapped_column(String(30))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    time_zone: Mapped[str] = mapped_column(String(64))
    """The zone the roster was written in: shifts are shown back in it."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Policy(Base):
    """Escalation steps for one priority in an organisation or one of its wards."""

    __tablename__ = "notify_policy"
    __table_args__ = (UniqueConstraint("organisation_id", "ward_key", "priority"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    ward_key: Mapped[str] = mapped_column(String(36))
    """The ward's id, or "" for the organisation (a NULL would not be unique)."""
    priority: Mapped[str] = mapped_column(String(10))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    repeat_after_seconds: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(36))


class OrganisationSettings(Base):
    """An organisation's fallback contact: told when nobody is on call or a channel is down."""

    __tablename__ = "notify_organisation"

    organisation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    fallback_email: Mapped[str | None] = mapped_column(String(320))
    fallback_phone: Mapped[str | None] = mapped_column(String(20))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Webhook(Base):
    """An organisation's endpoint that receives every alarm change, signed with its secret."""

    __tablename__ = "notify_webhook"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(Sealed())
    """Sealed at rest: every delivery signs with it, so it is kept, not hashed."""
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class AlarmEscalation(Base):
    """Where one alarm's escalation stands: the next step and when it is due."""

    __tablename__ = "notify_alarm"
    __table_args__ = (Index("ix_notify_alarm_due", "state", "next_at"),)

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    ward_id: Mapped[str | None] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(36))
    priority: Mapped[str] = mapped_column(String(10))
    condition: Mapped[str] = mapped_column(String(60))
    source: Mapped[str] = mapped_column(String(10))
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """The policy's steps when the alarm was raised: editing a policy changes no running
    escalation."""
    repeat_after_seconds: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer, default=0)
    """The next step to run."""
    round: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(14), default=ESCALATING)
    """escalating, acknowledged, resolved or exhausted (every step ran, no repeat)."""
    next_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    stopped_by: Mapped[str | None] = mapped_column(String(36))


class Delivery(Base):
    """One message to one address over one channel, from queued to delivered or failed.

    Retries of the same message keep this row (and its idempotency key); falling back to
    another channel makes a new row.
    """

    __tablename__ = "notify_delivery"
    __table_args__ = (
        Index("ix_notify_delivery_due", "status", "next_attempt_at"),
        Index("ix_notify_delivery_alert", "alert_id"),
        Index("ix_notify_delivery_provider", "provider_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    alert_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(20))
    """alarm, acknowledged, resolved, channel_down, no_one_on_call or a webhook event type."""
    user_id: Mapped[str | None] = mapped_column(String(36))
    """None for the fallback contact and webhooks."""
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(2000))
    target: Mapped[str] = mapped_column(String(80), default="")
    """Whom the step meant (a duty, `care_team`, `fallback`, or a webhook's id)."""
    fallbacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Channels still to try, in order, if this one fails for good."""
    locale: Mapped[str] = mapped_column(String(16), default="en")
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A webhook's JSON body, fixed when the change happened."""
    step: Mapped[int] = mapped_column(Integer, default=0)
    round: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(10))
    """queued, sending, sent, delivered, failed or cancelled."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    provider_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(500))
    raised_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    """When the alarm was raised: delivery latency is measured from here."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class InboxItem(Base):
    """An entry in a user's in-app inbox."""

    __tablename__ = "notify_inbox"
    __table_args__ = (Index("ix_notify_inbox_user", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36))
    alert_id: Mapped[str | None] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    priority: Mapped[str] = mapped_column(String(10))
    title: Mapped[str] = mapped_column(String(200))
    link: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class FeedEntry(Base):
    """One alarm change on the live stream; its sequence number is the SSE event id."""

    __tablename__ = "notify_feed"
    __table_args__ = (Index("ix_notify_feed_organisation", "organisation_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Breaker(Base):
    """A channel's circuit in one organisation: closed, open (failing) or half-open."""

    __tablename__ = "notify_breaker"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    """`<organisation>:<channel>` (webhooks: `<organisation>:webhook:<id>`)."""
    organisation_id: Mapped[str] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(60))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(10), default="closed")
    opened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    alarm_id: Mapped[str | None] = mapped_column(String(36))
    """The technical alarm raised when the circuit opened."""
    reason: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class LinkUse(Base):
    """An acknowledge link that has been used: each works once."""

    __tablename__ = "notify_link_use"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36))
    used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
