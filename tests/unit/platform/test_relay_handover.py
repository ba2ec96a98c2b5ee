"""The relay hands on envelopes its own process committed instead of parsing them back, and
forgets those another relay took, so what it holds follows the backlog."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from medcloud.ingest.events import ReadingsCollected, Sample
from medcloud.platform.events import Envelope
from medcloud.platform.outbox import OutboxRelay

AT = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def envelope(device_id: str) -> Envelope:
    event = ReadingsCollected(
        organisation_id="org-1",
        device_id=device_id,
        patient_id=None,
        received_at=AT,
        timestamp=AT,
        data={"heart_rate": 72.0},
        samples=(Sample(timestamp=AT, measurements={"heart_rate": 72.0}),),
    )
    return Envelope.wrap(event, occurred_at=AT)


def relay(batch_size: int = 10) -> OutboxRelay:
    unused = cast(Any, None)
    return OutboxRelay(
        sessions=unused, bus=unused, clock=unused, metrics=unused, batch_size=batch_size
    )


def row(position: int, envelope: Envelope) -> tuple[int, str, str]:
    return position, envelope.id, envelope.to_bytes().decode()


def test_committed_envelopes_are_handed_on_with_their_event_already_opened() -> None:
    outbox = relay()
    mine = envelope("dev-1")
    outbox.committed([mine])
    (handed,) = outbox._envelopes([row(1, mine)])
    assert handed is mine
    assert handed.open(ReadingsCollected).device_id == "dev-1"


def test_envelopes_committed_elsewhere_are_read_from_their_rows() -> None:
    outbox = relay()
    theirs = envelope("dev-2")
    (read,) = outbox._envelopes([row(1, theirs)])
    assert read is not theirs
    assert read == theirs
    assert read.open(ReadingsCollected).device_id == "dev-2"


def test_what_another_relay_took_is_forgotten_and_the_rest_kept() -> None:
    outbox = relay()
    a, b, c, d = (envelope(f"dev-{n}") for n in range(4))
    outbox.committed([a, b, c, d])
    # Another relay claimed a and b; this one claims c, and an event committed elsewhere.
    e = envelope("dev-e")
    handed = outbox._envelopes([row(3, c), row(5, e)])
    assert handed[0] is c
    assert handed[1] == e
    assert list(outbox._local) == [d.id]


def test_at_most_two_batches_are_kept() -> None:
    outbox = relay(batch_size=2)
    many = [envelope(f"dev-{n}") for n in range(7)]
    outbox.committed(many)
    assert list(outbox._local) == [e.id for e in many[-4:]]
