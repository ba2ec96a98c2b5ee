"""Deterministic, URL-safe ids for the FHIR resources medcloud derives from its readings.

An Observation or DeviceMetric has no row of its own: it is a view of readings, so its id is
computed from what identifies them and, where it fits, can be decoded back to that key. FHIR ids
are at most 64 characters of [A-Za-z0-9-.] (R4 datatypes, "id").

The reversible form is `<device uuid, 32 hex>.<type, "_" as "-">[.<instant>]`, the instant being
microseconds since 0001-01-01T00:00:00Z in 12 base-36 digits: fixed width, so for one device and
type the ids sort as the readings do. Keys that cannot take that form (a device id that is not a
canonical UUID, a type of other characters or too long) get `h.<base32 of SHA-256>` instead,
which is stable but one-way.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""What FHIR R4 allows as a resource id."""

_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INSTANT_DIGITS = 12  # 36**12 µs is about 149 000 years: every datetime fits
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TYPE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
_OBSERVATION_ID = re.compile(r"([0-9a-f]{32})\.([a-z0-9]+(?:-[a-z0-9]+)*)\.([0-9a-z]{12})")
_METRIC_ID = re.compile(r"([0-9a-f]{32})\.([a-z0-9]+(?:-[a-z0-9]+)*)")


def observation_id(*, device_id: str, type: str, at: datetime) -> str:
    """Return the id of the Observation for one reading series key."""
    instant = _instant(at)
    stem = _stem(device_id, type)
    if stem is not None:
        candidate = f"{stem}.{_base36(instant)}"
        if len(candidate) <= 64:
            return candidate
    return _hashed("observation", device_id, type, str(instant))


def parse_observation_id(value: str) -> tuple[str, str, datetime] | None:
    """Return the (device_id, type, at) an Observation id encodes; None for a hashed id."""
    match = _OBSERVATION_ID.fullmatch(value)
    if match is None:
        return None
    hex_id, type_segment, instant = match.groups()
    try:
        at = _EPOCH + int(instant, 36) * _MICROSECOND
    except OverflowError:
        return None
    return str(uuid.UUID(hex=hex_id)), type_segment.replace("-", "_"), at


def device_metric_id(*, device_id: str, type_code: str) -> str:
    """Return the id of the DeviceMetric for one device and measurement type."""
    stem = _stem(device_id, type_code)
    if stem is not None and len(stem) <= 64:
        return stem
    return _hashed("metric", device_id, type_code)


def parse_device_metric_id(value: str) -> tuple[str, str] | None:
    """Return the (device_id, type_code) a DeviceMetric id encodes; None for a hashed id."""
    match = _METRIC_ID.fullmatch(value)
    if match is None:
        return None
    hex_id, type_segment = match.groups()
    return str(uuid.UUID(hex=hex_id)), type_segment.replace("-", "_")


def utc(at: datetime) -> datetime:
    """Return `at` in UTC; refuse a naive datetime, which FHIR cannot carry with a time."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: FHIR needs a time zone")
    return at.astimezone(UTC)


def _stem(device_id: str, type_code: str) -> str | None:
    # Only the canonical spelling decodes back to the same string, so only it is encoded.
    try:
        canonical = str(uuid.UUID(device_id))
    except ValueError:
        return None
    if canonical != device_id or _TYPE.fullmatch(type_code) is None:
        return None
    return f"{uuid.UUID(device_id).hex}.{type_code.replace('_', '-')}"


def _instant(at: datetime) -> int:
    return (utc(at) - _EPOCH) // _MICROSECOND


def _base36(number: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    return "".join(reversed(digits)).rjust(_INSTANT_DIGITS, "0")


def _hashed(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return "h." + base64.b32encode(digest).decode().rstrip("=").lower()
