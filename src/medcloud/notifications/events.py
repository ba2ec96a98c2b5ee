"""Events the notifications context publishes."""

from __future__ import annotations

import datetime as dt

from medcloud.platform.events import Event


class AlertEscalated(Event):
    """An alarm nobody acknowledged went on to its next escalation step."""

    routing_key = "alert.escalated"

    alert_id: str
    patient_id: str | None
    ward_id: str | None
    priority: str
    step: int
    """The step that ran (0 is the first, which runs when the alarm is raised)."""
    round: int
    """How often the whole chain has repeated before this step."""
    target: str
    """Whom the step meant: a duty (primary, charge, physician …) or `care_team`."""
    recipients: int
    """People told at this step."""


class NotificationDelivered(Event):
    """A channel accepted (or confirmed delivery of) a message."""

    routing_key = "notification.delivered"

    delivery_id: str
    alert_id: str | None
    kind: str
    channel: str
    user_id: str | None
    status: str
    """`sent` (accepted by the provider) or `delivered` (the provider confirmed it arrived)."""


class NotificationFailed(Event):
    """A message could not be delivered over a channel; a fallback may follow."""

    routing_key = "notification.failed"

    delivery_id: str
    alert_id: str | None
    kind: str
    channel: str
    user_id: str | None
    reason: str
    fallback: str | None
    """The channel tried next, if any."""


class ChannelDown(Event):
    """A channel kept failing: its circuit opened. Analytics raises a technical alarm."""

    routing_key = "notification.channel.down"

    alarm_id: str
    channel: str
    reason: str
    since: dt.datetime


class ChannelRestored(Event):
    """A channel that was down delivered again: its technical alarm is over."""

    routing_key = "notification.channel.restored"

    alarm_id: str
    channel: str
    since: dt.datetime


class AlarmUnrouted(Event):
    """An alarm found nobody on call: analytics raises a technical alarm for it."""

    routing_key = "notification.unrouted"

    alarm_id: str
    """The technical alarm's id."""
    alert_id: str
    """The alarm nobody could be told about."""
    device_id: str
    patient_id: str | None
    ward_id: str | None
    priority: str
    raised_at: dt.datetime


class LinkAcknowledged(Event):
    """Someone acknowledged an alarm with the signed link of a message they were sent."""

    routing_key = "notification.link.acknowledged"

    alert_id: str
    user_id: str
