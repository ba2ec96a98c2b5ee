"""Opaque keyset cursors: (timestamp, tie-breaker) pairs, so pages stay stable under inserts."""

from __future__ import annotations

import base64
import datetime as dt

from medcloud.platform.errors import FieldError, Invalid


def encode_cursor(timestamp: dt.datetime, key: str | int) -> str:
    """Return the cursor that resumes after the row (timestamp, key)."""
    return base64.urlsafe_b64encode(f"{timestamp.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Return (timestamp, key) of a cursor made by `encode_cursor`; 422 for anything else."""
    try:
        timestamp, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        parsed = dt.datetime.fromisoformat(timestamp)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(
            "the cursor is not one this server issued",
            errors=[FieldError("query.cursor", "unknown cursor")],
        ) from exc
    if parsed.tzinfo is None:
        raise Invalid(
            "the cursor is not one this server issued",
            errors=[FieldError("query.cursor", "unknown cursor")],
        )
    return parsed, key
