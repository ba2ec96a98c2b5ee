"""The audit contract every context speaks: what happened, by whom, to what, with what outcome.

Contexts publish `AuditRecorded` through their unit of work, so an entry travels with the
change it describes (or alone, for reads and refusals) via the outbox and is never lost while
the bus or the audit consumer is down. The audit context appends them to its hash chain.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import Field

from medcloud.platform.events import Event


class Outcome(StrEnum):
    """How the attempt ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class ActorType(StrEnum):
    """What kind of principal acted."""

    USER = "user"
    DEVICE = "device"
    SERVICE = "service"
    ANONYMOUS = "anonymous"


class AuditRecorded(Event):
    """Something worth accounting for happened. `organisation_id` is "" when none is known."""

    routing_key = "audit.recorded"

    occurred_at: dt.datetime
    actor_type: ActorType
    actor_id: str | None = None
    action: str
    """Dotted verb, e.g. `auth.login`, `readings.read`, `device.create`."""
    object_type: str | None = None
    object_id: str | None = None
    patient_id: str | None = None
    outcome: Outcome = Outcome.SUCCESS
    source_ip: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    """Small, non-clinical context (a reason, a count); never reading values or names."""
