"""Events: frozen, past-tense, versioned facts, and the envelope they travel in."""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from typing import Any, ClassVar, Self, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """A fact a context publishes; subclasses set `routing_key` and `version`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    routing_key: ClassVar[str]
    version: ClassVar[int] = 1

    organisation_id: str


class Envelope(BaseModel):
    """What goes on the wire: id, type, version, occurred_at, organisation_id and payload."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: str
    version: int
    occurred_at: dt.datetime
    organisation_id: str
    payload: dict[str, Any]

    @classmethod
    def wrap(cls, event: Event, *, occurred_at: dt.datetime) -> Envelope:
        """Put `event` in a new envelope."""
        payload = event.model_dump(mode="json", exclude={"organisation_id"})
        return cls(
            type=event.routing_key,
            version=event.version,
            occurred_at=occurred_at,
            organisation_id=event.organisation_id,
            payload=payload,
        )

    def open(self, event_type: builtins.type[E]) -> E:
        """Return the event inside, as `event_type`."""
        return event_type.model_validate({**self.payload, "organisation_id": self.organisation_id})

    def to_bytes(self) -> bytes:
        """Serialise to JSON."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, body: bytes | str) -> Self:
        """Parse JSON produced by `to_bytes`."""
        return cls.model_validate(orjson.loads(body))


E = TypeVar("E", bound=Event)
