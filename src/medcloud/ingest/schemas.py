"""Wire models of the ingest context."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from medcloud.platform.types import Timestamp


@dataclass(frozen=True)
class UnitValue:
    """A measurement sent in a unit of the device's choosing, converted by the gate."""

    value: float
    unit: str


def _number(raw: Any) -> float:
    # bool is an int in Python, and "70" is not a measurement: only real JSON numbers pass.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError("a measurement is a number, or an object {value, unit}")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("a measurement must be a finite number")
    return value


def _measurement(raw: Any) -> float | UnitValue:
    if isinstance(raw, UnitValue):
        return raw
    if isinstance(raw, dict):
        if set(raw) != {"value", "unit"}:
            raise ValueError("a measurement with a unit is exactly {value, unit}")
        unit = raw["unit"]
        if not isinstance(unit, str) or not 0 < len(unit) <= 20:
            raise ValueError("unit must be a UCUM code of at most 20 characters")
        return UnitValue(_number(raw["value"]), unit)
    return _number(raw)


def _dump(value: float | UnitValue) -> Any:
    return value if isinstance(value, float) else {"value": value.value, "unit": value.unit}


# Validated by one plain function, so an error names the measurement itself
# (`measurements.heart_rate`) rather than a branch of a union.
Value = Annotated[
    float | UnitValue,
    PlainValidator(_measurement),
    PlainSerializer(_dump),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {
                    "type": "object",
                    "properties": {
                        "value": {"type": "number"},
                        "unit": {"type": "string", "minLength": 1, "maxLength": 20},
                    },
                    "required": ["value", "unit"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class ReadingIn(BaseModel):
    """Measurements a device took at one instant."""

    model_config = ConfigDict(extra="forbid")

    timestamp: Timestamp
    measurements: dict[Annotated[str, Field(min_length=1, max_length=40)], Value] = Field(
        min_length=1, max_length=64
    )


class ReadingsIn(BaseModel):
    """Either one reading (`timestamp` + `measurements`) or a batch (`readings`)."""

    model_config = ConfigDict(extra="forbid")

    timestamp: Timestamp | None = None
    measurements: dict[Annotated[str, Field(min_length=1, max_length=40)], Value] | None = Field(
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


# The items of read answers are typed dicts, not models: a page or a chart holds thousands,
# and building a model of each cost a 7-day chart 20 ms where dicts cost 3. The pages around
# them stay models, so the contract and its OpenAPI schema are the same either way.


class ReadingRead(TypedDict):
    """One stored measurement; `clock_drift` flags a timestamp far behind its receipt."""

    type: str
    value: float
    unit: str
    timestamp: dt.datetime
    clock_drift: bool


class LatestReading(TypedDict):
    """The newest stored value of one measurement type for a patient."""

    type: str
    value: float
    unit: str
    timestamp: dt.datetime
    device_id: str


class LatestReadings(BaseModel):
    """The newest value of every measurement type a patient has readings of."""

    patient_id: str
    items: list[LatestReading]


class Bucket(TypedDict):
    """Minimum, maximum, mean and count of one measurement type over one time bucket."""

    type: str
    start: dt.datetime
    min: float
    max: float
    avg: float
    count: int


class BucketPage(BaseModel):
    """A downsampled range of one device's readings, oldest bucket first."""

    device_id: str
    bucket_seconds: int
    items: list[Bucket]


class QuarantinedReadingRead(BaseModel):
    """A reading the gate refused, with why. `payload` is withheld from those who may not see
    readings of that patient."""

    id: int
    device_id: str
    transport: str
    received_at: dt.datetime
    field: str
    reason: str
    payload: str | None


class QuarantinePage(BaseModel):
    """Refused readings, newest first."""

    items: list[QuarantinedReadingRead]
    next_cursor: str | None


class ReadingPage(BaseModel):
    """Readings of one device, newest first."""

    device_id: str
    items: list[ReadingRead]
    next_cursor: str | None
