"""Events the analytics context publishes: every change of an alarm, as it happened.

Each carries the alarm as it stands after the change, so a consumer (notifications, a ward
display) needs nothing else to act on it.
"""

from __future__ import annotations

import datetime as dt

from medcloud.platform.events import Event


class AlertChanged(Event):
    """An alarm as it stands after a change (the common shape of every alert event)."""

    alert_id: str
    source: str
    """`clinical` (physiological) or `technical`."""
    state: str
    priority: str
    device_id: str
    patient_id: str | None
    ward_id: str | None
    rule: str
    """The alarm condition (e.g. `heart_rate_high`); with `rule_id` and `rule_version` when a
    configured rule raised it (a default rule has neither id nor version above 0)."""
    rule_id: str | None = None
    rule_version: int | None = None
    measurement: str | None
    value: float | None
    """The value that raised the alarm."""
    last_value: float | None = None
    worst_value: float | None = None
    threshold: float | None
    condition_active: bool = True
    reading_timestamp: dt.datetime | None
    received_at: dt.datetime | None = None
    """When the reading that raised the alarm was accepted (alarm latency starts here)."""
    raised_at: dt.datetime
    changed_at: dt.datetime
    actor_id: str | None = None
    """The user who acknowledged or silenced it (None: the platform)."""
    silenced_until: dt.datetime | None = None
    model_version: str | None = None
    message: str | None = None

    @property
    def severity(self) -> str:
        """Name the priority as the first alert events did."""
        return self.priority


class AlertRaised(AlertChanged):
    """A new alarm: a rule's condition held (long enough), or a device needs attention."""

    routing_key = "alert.raised"


class AlertUpdated(AlertChanged):
    """An open alarm changed: its priority, or its condition ended or came back while latched."""

    routing_key = "alert.updated"


class AlertAcknowledged(AlertChanged):
    """Someone acknowledged an alarm: escalation stops."""

    routing_key = "alert.acknowledged"


class AlertSilenced(AlertChanged):
    """Someone paused an alarm's audible signal until `silenced_until`."""

    routing_key = "alert.silenced"


class AlertResolved(AlertChanged):
    """An alarm is over: its condition ended (and, if latching, it was acknowledged)."""

    routing_key = "alert.resolved"
