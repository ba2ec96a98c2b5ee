from __future__ import annotations

import datetime as dt

from medcloud.ingest.events import ReadingsCollected, Sample
from medcloud.platform.events import Envelope

AT = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def test_an_event_survives_the_wire_unchanged() -> None:
    event = ReadingsCollected(
        organisation_id="org-1",
        device_id="dev-1",
        patient_id=None,
        received_at=AT,
        timestamp=AT,
        data={"heart_rate": 72.0},
        samples=(Sample(timestamp=AT, measurements={"heart_rate": 72.0}),),
    )
    envelope = Envelope.wrap(event, occurred_at=AT)
    assert envelope.type == "device.data.collected"
    assert envelope.version == 1
    assert envelope.organisation_id == "org-1"
    assert set(envelope.payload) >= {"device_id", "data", "timestamp"}
    again = Envelope.from_bytes(envelope.to_bytes())
    assert again == envelope
    assert again.open(ReadingsCollected) == event
