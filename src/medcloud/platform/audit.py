"""The audit contract every context speaks: what happened, by whom, to what, with what outcome.

Contexts publish `AuditRecorded` through their unit of work, so an entry travels with the
change it describes (or alone, for reads and refusals) via the outbox and is never lost while
the bus or the audit consumer is down. The audit context appends them to its hash chain.
"""

from __future__ import annotations

import datetime as dt
from contextvars import ContextVar, Token
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field

from medcloud.platform.events import Event
from medcloud.platform.security import DevicePrincipal, Principal, UserPrincipal


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


@dataclass(frozen=True)
class RequestContext:
    """Where the current request came from, for audit entries."""

    request_id: str | None = None
    source_ip: str | None = None


_NO_REQUEST = RequestContext()
_request: ContextVar[RequestContext] = ContextVar("medcloud_request", default=_NO_REQUEST)


def set_request_context(context: RequestContext) -> Token[RequestContext]:
    """Remember the current request (the edge middleware calls this)."""
    return _request.set(context)


def reset_request_context(token: Token[RequestContext]) -> None:
    """Forget the current request."""
    _request.reset(token)


@dataclass(frozen=True)
class ServiceActor:
    """A part of medcloud acting on another system's word (an HL7 interface), not a person's
    or a device's: audited under its own name."""

    name: str
    organisation_id: str


def audit_record(
    principal: Principal | ServiceActor | None,
    action: str,
    *,
    occurred_at: dt.datetime,
    organisation_id: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    patient_id: str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    detail: dict[str, Any] | None = None,
) -> AuditRecorded:
    """Describe what `principal` did, stamped with the current request's id and source address."""
    request = _request.get()
    actor_id: str | None
    if isinstance(principal, UserPrincipal):
        actor_type, actor_id, organisation = (
            ActorType.USER,
            principal.user_id,
            principal.organisation_id,
        )
    elif isinstance(principal, DevicePrincipal):
        actor_type, actor_id = ActorType.DEVICE, principal.device_id
        organisation = principal.organisation_id
    elif isinstance(principal, ServiceActor):
        actor_type, actor_id, organisation = (
            ActorType.SERVICE,
            principal.name,
            principal.organisation_id,
        )
    else:
        actor_type, actor_id, organisation = ActorType.ANONYMOUS, None, ""
    return AuditRecorded(
        organisation_id=organisation_id if organisation_id is not None else organisation,
        occurred_at=occurred_at,
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id,
        outcome=outcome,
        source_ip=request.source_ip,
        request_id=request.request_id,
        detail=detail or {},
    )
