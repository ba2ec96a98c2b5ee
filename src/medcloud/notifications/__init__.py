"""Notifications: who is told of an alarm, over which channel, escalation until someone
acknowledges it, and a record of every delivery."""

from __future__ import annotations

from pathlib import Path

from medcloud.notifications.api import router
from medcloud.notifications.handlers import SUBSCRIPTIONS
from medcloud.notifications.loops import deliver, demo_mailbox, escalate, provide_notifier
from medcloud.notifications.sns import SUBSCRIPTIONS as SNS_SUBSCRIPTIONS
from medcloud.notifications.sns import provide_sns_alarms
from medcloud.platform.context import Context

CONTEXT = Context(
    name="notifications",
    router=router,
    subscriptions=(*SUBSCRIPTIONS, *SNS_SUBSCRIPTIONS),
    migrations=Path(__file__).parent / "migrations",
    provides=(provide_notifier, provide_sns_alarms),
    background=(demo_mailbox, escalate, deliver),
)
