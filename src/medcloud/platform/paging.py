"""Opaque keyset cursors: (timestamp, tie-breaker) pairs, so pages stay stable under inserts."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from medcloud.platform.errors import FieldError, Invalid

T = TypeVar("T")


def encode_cursor(timestamp: dt.datetime, key: str | int) -> str:
    """Return the cursor that resumes after the row (timestamp, key)."""
    return base64.urlsafe_b64encode(f"{timestamp.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Return (timestamp, key) of a cursor made by `encode_cursor`; 422 for anything else."""
    try:
        timestamp, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        parsed = dt.datetime.fromisoformat(timestamp)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _unknown_cursor() from exc
    if parsed.tzinfo is None:
        raise _unknown_cursor()
    return parsed, key


def decode_numbered_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """Return (timestamp, row number) of a cursor whose tie-breaker is a number; 422 otherwise."""
    timestamp, key = decode_cursor(cursor)
    if not key.isdigit():
        raise _unknown_cursor()
    return timestamp, int(key)


def before(
    timestamp_column: InstrumentedAttribute[dt.datetime],
    key_column: InstrumentedAttribute[Any],
    after: tuple[dt.datetime, Any],
) -> ColumnElement[bool]:
    """Select the rows that follow (timestamp, key) in newest-first order."""
    timestamp, key = after
    return or_(timestamp_column < timestamp, and_(timestamp_column == timestamp, key_column < key))


def after(
    timestamp_column: InstrumentedAttribute[dt.datetime],
    key_column: InstrumentedAttribute[Any],
    cursor: tuple[dt.datetime, Any],
) -> ColumnElement[bool]:
    """Select the rows that follow (timestamp, key) in oldest-first order."""
    timestamp, key = cursor
    return or_(timestamp_column > timestamp, and_(timestamp_column == timestamp, key_column > key))


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[dt.datetime, str | int]]
) -> tuple[Sequence[T], str | None]:
    """Split `limit + 1` fetched rows into the page and the cursor of the next one (if any)."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(*key(rows[limit - 1]))


def _unknown_cursor() -> Invalid:
    return Invalid(
        "the cursor is not one this server issued",
        errors=[FieldError("query.cursor", "unknown cursor")],
    )
