"""The relay hands on envelopes its own process committed under its lease instead of parsing
them back, and holds at most two batches of them, so a bus that is down cannot fill memory."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from medcloud.ingest.events import ReadingsCollected, Sample
from medcloud.platform.events import Envelope
from medcloud.platform.outbox import OWN_LEASE, OutboxRelay

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
    outbox.committed([mine], claimed=True)
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


def test_envelopes_committed_unclaimed_are_not_held_but_looked_for_in_the_table() -> None:
    outbox = relay()
    outbox._look = False
    outbox.committed([envelope("dev-3")])
    assert outbox._own == {}
    assert outbox._look


def test_at_most_two_batches_are_held_then_events_wait_in_the_table() -> None:
    outbox = relay(batch_size=2)
    assert outbox.own_lease() is None  # not running: any relay claims them
    outbox._running = True
    many = [envelope(f"dev-{n}") for n in range(4)]
    outbox.committed(many[:3], claimed=True)
    assert outbox.own_lease() == OWN_LEASE
    outbox.committed(many[3:], claimed=True)
    assert outbox.own_lease() is None
    handed = outbox._envelopes([row(n, e) for n, e in enumerate(many[:2])])
    assert handed[0] is many[0]
    assert outbox.own_lease() == OWN_LEASE
