"""Events the ingest context publishes."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from medcloud.platform.events import Event


class Sample(BaseModel):
    """Measurements a device took at one instant."""

    model_config = ConfigDict(frozen=True)

    timestamp: dt.datetime
    measurements: dict[str, float]


class ReadingsCollected(Event):
    """A batch of readings from one device was stored (newly stored ones only: retries of
    already-stored readings publish nothing, so consumers never see a reading twice).

    `timestamp` and `data` are the newest sample, as in the reference design; `samples` holds
    every sample of the batch, oldest first.
    """

    routing_key = "device.data.collected"

    device_id: str
    patient_id: str | None
    received_at: dt.datetime
    timestamp: dt.datetime
    data: dict[str, float]
    samples: tuple[Sample, ...]
