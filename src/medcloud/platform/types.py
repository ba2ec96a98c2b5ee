"""Field types every context's wire models share.

Request bodies are read strictly: a number is a JSON number, a time is an RFC 3339 string, a
text is bounded and carries no control characters. Pydantic's lax mode would turn `true` into 1,
`"72"` into 72 and `1700000000` into a date in 2023, so a client's mistake would be stored as a
plausible, wrong value instead of being refused with the field's name. Each type documents in
the OpenAPI schema exactly what it accepts, so the contract test can hold the server to it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, AllowInfNan, AwareDatetime, BeforeValidator, Field, Strict

StrictNumber = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite JSON number (integer or not); booleans, numeric strings, NaN and Infinity are
refused. (Strict mode, not a validator of our own: constraints such as `Field(gt=0)` then stay
in the JSON schema as `exclusiveMinimum`, where a client can see them.)"""


def _json_integer(raw: Any) -> Any:
    # JSON has numbers, not integers: 2 and 2.0 are the same number, which JSON Schema calls
    # an integer. A boolean or a numeric string is not one; 2.5 is refused by `int` itself.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError("must be an integer")
    return raw


INTEGER = BeforeValidator(_json_integer)
"""Read an `int` field strictly. Bounds go before it, `Annotated[int, Field(ge=0), INTEGER]`,
so that they reach the JSON schema as `minimum` and `maximum`."""

StrictInteger = Annotated[int, INTEGER]
"""A JSON integer (2 or 2.0); booleans, strings and numbers with a fraction are refused."""

# RFC 3339 section 5.6: full-date "T" full-time, the offset mandatory.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
# The same without the offset: a wall-clock time read in a zone named beside it.
_LOCAL_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?"
)


def _rfc3339(raw: Any) -> Any:
    # Pydantic would read 1700000000 (or "1700000000") as seconds since 1970, and "2026-11-30"
    # as midnight: a device that sends a counter or a date would be stored at a plausible,
    # wrong time. Datetimes already parsed (a model built in Python) pass as they are.
    if isinstance(raw, dt.datetime) or (isinstance(raw, str) and _RFC3339.fullmatch(raw)):
        return raw
    raise ValueError("must be an RFC 3339 date-time with a zone, such as 2026-11-30T10:00:00Z")


def _local_date_time(raw: Any) -> Any:
    if isinstance(raw, dt.datetime) or (isinstance(raw, str) and _LOCAL_DATE_TIME.fullmatch(raw)):
        return raw
    raise ValueError("must be an RFC 3339 date-time, such as 2026-11-30T10:00:00 or …T10:00:00Z")


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""An RFC 3339 date-time with its zone (`Z` or `±hh:mm`); numbers and naive times are refused."""

LocalDateTime = Annotated[dt.datetime, BeforeValidator(_local_date_time)]
"""An RFC 3339 date-time whose zone may be left out, for times read on a named zone's wall clock
(an on-call shift); numbers and bare dates are refused."""

EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)
# The calendar runs furthest ahead at UTC+14: a child born there today has tomorrow's date in
# UTC, and must not be refused as born in the future.
_AHEAD_OF_UTC = dt.timedelta(hours=14)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(raw: Any) -> Any:
    # Pydantic reads a number as seconds since 1970 and cuts a date-time to its date.
    if isinstance(raw, dt.date) or (isinstance(raw, str) and _DATE.fullmatch(raw)):
        return raw
    raise ValueError("must be a date YYYY-MM-DD")


def _born_by_now(value: dt.date) -> dt.date:
    if value < EARLIEST_BIRTH_DATE:
        raise ValueError(f"must not be before {EARLIEST_BIRTH_DATE.isoformat()}")
    if value > (dt.datetime.now(dt.UTC) + _AHEAD_OF_UTC).date():
        raise ValueError("must not be in the future")
    return value


BirthDate = Annotated[
    dt.date,
    BeforeValidator(_iso_date),
    AfterValidator(_born_by_now),
    Field(
        description="YYYY-MM-DD, from 1900-01-01 up to today",
        # What a schema can say of it: a calendar date from 1900 on.
        json_schema_extra={"pattern": r"^(19|[2-9]\d)\d{2}-\d{2}-\d{2}$"},
    ),
]
"""A date of birth: an ISO 8601 calendar date, not before 1900 and not in the future."""

# One line of text: no control characters. Identifiers must not be padded at all; names and
# reasons typed by people are trimmed of spaces at either end. Either way the schema says
# exactly what is taken: the length limit holds for what is sent, and the pattern for what is
# left once trimmed, so "Doe " and "Doe" are one name and a reason of ten spaces is none.
_EDGE = r"[^ \x00-\x1f\x7f]"
_INNER = r"[^\x00-\x1f\x7f]"
_PAD = r"[ \t\n\r\f\v]"
_PADDING = " \t\n\r\f\v"


def line(min_length: int, max_length: int) -> Any:
    """`Field` metadata for one line of min_length to max_length characters, not padded."""
    return Field(
        min_length=min_length, max_length=max_length, pattern=f"^{_EDGE}(?:{_INNER}*{_EDGE})?$"
    )


def trimmed(min_length: int, max_length: int) -> Any:
    """`Field` metadata for one line of at most max_length characters which, trimmed (`TRIM`
    after it), keeps at least min_length."""
    middle = f"{_INNER}*" if min_length <= 1 else f"{_INNER}{{{min_length - 2},}}"
    tail = "?" if min_length <= 1 else ""
    return Field(max_length=max_length, pattern=f"^{_PAD}*{_EDGE}(?:{middle}{_EDGE}){tail}{_PAD}*$")


def _trim(value: str) -> str:
    return value.strip(_PADDING)


TRIM = AfterValidator(_trim)
"""Trim the spaces `trimmed` allows at either end (and only those)."""

Name = Annotated[str, trimmed(1, 100), TRIM]
"""A person's, place's or thing's name: one line of at most 100 characters, trimmed."""

Text = Annotated[str, trimmed(1, 200), TRIM]
"""A short line of text such as a label: at most 200 characters, trimmed."""

Id = Annotated[str, Field(min_length=1, max_length=64)]
"""An object's id as the API hands it out (UUIDs today; bounded, never parsed)."""
