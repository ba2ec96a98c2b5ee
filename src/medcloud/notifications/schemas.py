"""Wire models of the notifications context."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from medcloud.platform.types import INTEGER, Id, LocalDateTime

Priority = Literal["high", "medium", "low"]
Channel = Literal["sms", "email"]
Duty = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,29}$", examples=["primary"])]


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("an IANA time zone such as Europe/Berlin") from exc
    return value


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError("a local time HH:MM")
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_zone)]
ClockTime = Annotated[str, Field(max_length=5), AfterValidator(_clock_time)]
Phone = Annotated[
    str, Field(max_length=16, pattern=r"^\+[1-9]\d{6,14}$", examples=["+441632960123"])
]
"""E.164."""
Email = Annotated[EmailStr, Field(max_length=254)]
Locale = Annotated[str, Field(max_length=5, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecipientIn(_In):
    """How to reach a user and when not to disturb them."""

    email: Email | None = None
    phone: Phone | None = None
    locale: Locale = "en"
    time_zone: TimeZone = "UTC"
    channels: dict[Priority, Annotated[list[Channel], Field(max_length=2)]] = Field(
        default_factory=dict,
        description="External channels to try in order, per priority; the in-app inbox is "
        "always told. A priority left out uses the default (high: sms then email, medium: "
        "email, low: inbox only).",
    )
    quiet_start: ClockTime | None = None
    quiet_end: ClockTime | None = None
    """Quiet hours (local time) hold medium and low priority to the inbox; never high."""

    @model_validator(mode="after")
    def _quiet_pair(self) -> RecipientIn:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet_start and quiet_end go together")
        return self


class RecipientRead(RecipientIn):
    """A user's contact details and preferences."""

    model_config = ConfigDict(from_attributes=True)

    user_id: str
    updated_at: dt.datetime | None = None


class ShiftIn(_In):
    """An on-call shift. Times with a zone are taken as they are; times without one are read on
    the wall clock of `time_zone` (daylight saving included)."""

    user_id: Id
    ward_id: Id | None = None
    """None: the duty covers every ward (e.g. the physician on call)."""
    duty: Duty
    starts_at: LocalDateTime
    ends_at: LocalDateTime
    time_zone: TimeZone = "UTC"


class ShiftRead(BaseModel):
    """An on-call shift, in UTC, with the zone it was written in."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    user_id: str
    ward_id: str | None
    duty: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    time_zone: str


class ShiftPage(BaseModel):
    """Shifts overlapping the asked window, by start."""

    items: list[ShiftRead]


class StepIn(_In):
    """One escalation step."""

    after_seconds: Annotated[int, Field(ge=0, le=86_400), INTEGER]
    """Seconds after the alarm was raised."""
    notify: Duty
    """A duty of the on-call roster (primary, charge, physician …) or `care_team`."""


class PolicyIn(_In):
    """Escalation steps for one priority, in the organisation or one ward."""

    ward_id: Id | None = None
    priority: Priority
    steps: Annotated[list[StepIn], Field(min_length=1, max_length=10)]
    repeat_after_seconds: Annotated[int, Field(ge=30, le=86_400), INTEGER] | None = None
    """Start the steps again this long after the last one (None: once through)."""

    @field_validator("steps")
    @classmethod
    def _ordered(cls, steps: list[StepIn]) -> list[StepIn]:
        times = [step.after_seconds for step in steps]
        if times != sorted(times) or times[0] != 0:
            raise ValueError("the first step at 0 s, the others in order")
        return steps


class PolicyRead(BaseModel):
    """An escalation policy; `ward_id` None applies to the whole organisation."""

    id: str | None
    """None: the built-in default."""
    ward_id: str | None
    priority: str
    steps: list[StepIn]
    repeat_after_seconds: int | None
    version: int


class PolicyPage(BaseModel):
    """Configured policies and the built-in defaults they override."""

    items: list[PolicyRead]
    defaults: list[PolicyRead]


class OrganisationIn(_In):
    """The organisation's fallback contact: told when nobody is on call or a channel is down."""

    fallback_email: Email | None = None
    fallback_phone: Phone | None = None
    locale: Locale = "en"


class OrganisationRead(OrganisationIn):
    """The organisation's notification settings."""

    model_config = ConfigDict(from_attributes=True)


class WebhookIn(_In):
    """An endpoint that receives every alarm change as a signed JSON POST."""

    url: AnyHttpUrl
    description: Annotated[str, Field(max_length=200)] = ""


class WebhookRead(BaseModel):
    """A webhook endpoint (its secret is shown once, when it is created)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    description: str
    created_at: dt.datetime


class WebhookCreated(WebhookRead):
    """A new endpoint and the secret its receiver verifies signatures with."""

    secret: str


class WebhookPage(BaseModel):
    """The organisation's webhook endpoints."""

    items: list[WebhookRead]


class InboxItemRead(BaseModel):
    """An entry in the user's in-app inbox."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    alert_id: str | None
    kind: str
    priority: str
    title: str
    link: str
    created_at: dt.datetime
    read_at: dt.datetime | None


class InboxPage(BaseModel):
    """A page of the inbox, newest first."""

    items: list[InboxItemRead]
    next_cursor: str | None
    unread: int


class DeliveryRead(BaseModel):
    """One message about an alarm: to whom, over what, and what became of it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    user_id: str | None
    target: str
    channel: str
    step: int
    round: int
    status: str
    attempts: int
    reason: str | None
    provider_id: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None


class EscalationRead(BaseModel):
    """How an alarm's escalation stands and every delivery made for it."""

    alert_id: str
    state: str
    priority: str
    step: int
    round: int
    next_at: dt.datetime | None
    stopped_at: dt.datetime | None
    stopped_by: str | None
    deliveries: list[DeliveryRead]


class AcknowledgedRead(BaseModel):
    """The answer to an acknowledge link."""

    alert_id: str
    acknowledged: Literal[True] = True
