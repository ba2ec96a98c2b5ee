"""Wire models of the ingest context."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Value = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ReadingIn(BaseModel):
    """Measurements a device took at one instant."""

    model_config = ConfigDict(extra="forbid")

    timestamp: AwareDatetime
    measurements: dict[Annotated[str, Field(max_length=40)], Value] = Field(
        min_length=1, max_length=64
    )


class ReadingsIn(BaseModel):
    """Either one reading (`timestamp` + `measurements`) or a batch (`readings`)."""

    model_config = ConfigDict(extra="forbid")

    timestamp: AwareDatetime | None = None
    measurements: dict[Annotated[str, Field(max_length=40)], Value] | None = Field(
        default=None, min_length=1, max_length=64
    )
    readings: list[ReadingIn] | None = Field(default=None, min_length=1, max_length=100_000)

    @model_validator(mode="after")
    def one_form(self) -> Self:
        single = self.timestamp is not None or self.measurements is not None
        if single and self.readings is not None:
            raise ValueError("send either timestamp and measurements, or readings, not both")
        if not single and self.readings is None:
            raise ValueError("send timestamp and measurements, or a readings batch")
        if single and (self.timestamp is None or self.measurements is None):
            raise ValueError("a single reading needs both timestamp and measurements")
        return self

    def as_batch(self) -> tuple[list[ReadingIn], bool]:
        """Return the readings, and whether they came as a batch."""
        if self.readings is not None:
            return self.readings, True
        assert self.timestamp is not None and self.measurements is not None  # noqa: S101
        return [ReadingIn(timestamp=self.timestamp, measurements=self.measurements)], False


class IngestResult(BaseModel):
    """What happened to a batch: all of it is stored (duplicates were stored before)."""

    device_id: str
    accepted: int
    stored: int
    duplicates: int


class ReadingRead(BaseModel):
    """One stored measurement."""

    type: str
    value: float
    unit: str
    timestamp: dt.datetime


class ReadingPage(BaseModel):
    """Readings of one device, newest first."""

    device_id: str
    items: list[ReadingRead]
    next_cursor: str | None
