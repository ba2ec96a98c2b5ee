"""Events: frozen, past-tense, versioned facts, and the envelope they travel in."""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from typing import Any, ClassVar, Self, TypeVar, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


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

    # Every consumer in a process opens the same envelope; the event is frozen, so it is
    # validated once and shared.
    _opened: dict[builtins.type[Event], Event] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # The same envelope, whether or not it has been opened here: the cache is no part of it.
        if not isinstance(other, Envelope):
            return NotImplemented
        return self.__dict__ == other.__dict__

    @classmethod
    def wrap(cls, event: Event, *, occurred_at: dt.datetime) -> Envelope:
        """Put `event` in a new envelope."""
        payload = event.model_dump(mode="json", exclude={"organisation_id"})
        envelope = cls(
            type=event.routing_key,
            version=event.version,
            occurred_at=occurred_at,
            organisation_id=event.organisation_id,
            payload=payload,
        )
        # Opening it would rebuild an equal event from the payload: keep the one in hand.
        envelope._opened[type(event)] = event
        return envelope

    def open(self, event_type: builtins.type[E]) -> E:
        """Return the event inside, as `event_type`."""
        found = self._opened.get(event_type)
        if found is None:
            found = event_type.model_validate(
                {**self.payload, "organisation_id": self.organisation_id}
            )
            self._opened[event_type] = found
        return cast(E, found)

    def to_bytes(self) -> bytes:
        """Serialise to JSON."""
        # The payload is JSON already (see `wrap`): orjson writes it without pydantic walking
        # every sample of a large batch again.
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type,
                "version": self.version,
                "occurred_at": self.occurred_at,
                "organisation_id": self.organisation_id,
                "payload": self.payload,
            }
        )

    @classmethod
    def from_bytes(cls, body: bytes | str) -> Self:
        """Parse JSON produced by `to_bytes`."""
        return cls.model_validate(orjson.loads(body))


E = TypeVar("E", bound=Event)
