"""FHIR R4 search parameters, read strictly: what each /fhir/r4 search accepts, typed.

Pure: query parameters in, frozen searches out, `InvalidSearch` (400) for a parameter this
server does not know or a value it cannot read. Strict handling (R4 search.html#errors): a
parameter silently ignored would widen a clinical search without the client knowing.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from medcloud.interop.fhir_ids import FHIR_ID
from medcloud.platform.errors import DomainError, FieldError

DEFAULT_COUNT = 50
MAX_COUNT = 1000
MAX_LASTN = 100
CURSOR = "_cursor"
"""The parameter of next and previous links: an opaque keyset position, not an offset."""

# Accepted everywhere: the result format (JSON is the only one) and paging.
_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_EXPORT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
EXPORT_TYPES = ("Patient", "Device", "Observation")

_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_PREFIXES = ("eq", "ge", "gt", "le", "lt", "ne", "sa", "eb", "ap")


class InvalidSearch(DomainError):
    """A search this server cannot run: an unknown parameter, or a value it cannot read."""

    status, slug, title = 400, "invalid-search", "Invalid search"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(
            f"search parameter {parameter!r}: {message}",
            errors=[FieldError(f"query.{parameter}", message)],
        )


@dataclass(frozen=True)
class Token:
    """A token search value: `system|code`, `|code` (no system) or `code` (any system)."""

    system: str | None
    code: str

    def matches(self, system: str | None, code: str | None) -> bool:
        """Tell whether a coding or identifier (system, code) is what this token names."""
        if code != self.code:
            return False
        return self.system is None or (system or "") == self.system


@dataclass(frozen=True)
class Paging:
    """How many results a page holds, and where it starts."""

    count: int
    cursor: str | None


@dataclass(frozen=True)
class PatientSearch:
    """Patient?_id=&identifier=&name="""

    ids: frozenset[str] | None
    identifier: Token | None
    name: str | None
    paging: Paging


@dataclass(frozen=True)
class DeviceSearch:
    """Device?_id=&patient=&identifier="""

    ids: frozenset[str] | None
    patient_id: str | None
    identifier: Token | None
    paging: Paging


@dataclass(frozen=True)
class MetricSearch:
    """DeviceMetric?_id=&source="""

    ids: frozenset[str] | None
    device_id: str | None
    paging: Paging


@dataclass(frozen=True)
class ObservationSearch:
    """Observation?_id=&patient=|subject=&device=&code=&category=&date=&_sort="""

    ids: frozenset[str] | None
    patient_id: str | None
    device_id: str | None
    codes: tuple[Token, ...]
    categories: tuple[Token, ...]
    start: dt.datetime | None
    end: dt.datetime | None
    newest_first: bool
    paging: Paging


@dataclass(frozen=True)
class LastN:
    """Observation/$lastn?patient=&code=&category=&max="""

    patient_id: str
    codes: tuple[Token, ...]
    categories: tuple[Token, ...]
    max: int


@dataclass(frozen=True)
class Export:
    """$export?_type=&_since=&_outputFormat="""

    types: frozenset[str]
    since: dt.datetime | None


@dataclass(frozen=True)
class SearchUrls:
    """The URLs of a search's pages: its own, and the same search at another cursor."""

    base_url: str
    resource_type: str
    params: tuple[tuple[str, str], ...]

    @property
    def self_url(self) -> str:
        """The URL the search was asked at."""
        return self._url(self.params)

    def at(self, cursor: str) -> str:
        """The URL of the same search, at `cursor`."""
        kept = tuple((name, value) for name, value in self.params if name != CURSOR)
        return self._url((*kept, (CURSOR, cursor)))

    def _url(self, params: Sequence[tuple[str, str]]) -> str:
        query = urlencode(list(params))
        return f"{self.base_url}/{self.resource_type}" + (f"?{query}" if query else "")


class _Params:
    """The query's parameters, each taken once by name; what is left over is unknown."""

    def __init__(self, items: Sequence[tuple[str, str]], *, repeatable: frozenset[str]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in items:
            self._values.setdefault(name, []).append(value)
        for name, values in self._values.items():
            if len(values) > 1 and name not in repeatable:
                raise InvalidSearch(name, "given more than once")

    def one(self, name: str) -> str | None:
        """Take the parameter's value, None when absent."""
        values = self._values.pop(name, None)
        if values is None:
            return None
        if not values[0]:
            raise InvalidSearch(name, "empty")
        return values[0]

    def every(self, name: str) -> list[str]:
        """Take every value of a repeatable parameter."""
        values = self._values.pop(name, [])
        if any(not value for value in values):
            raise InvalidSearch(name, "empty")
        return values

    def done(self) -> None:
        """Refuse what is left: an unknown parameter, or a format other than JSON."""
        output = self.one("_format")
        if output is not None and output not in _FORMATS:
            raise InvalidSearch("_format", "this server answers JSON only")
        for name in sorted(self._values):
            raise InvalidSearch(name, "not a search parameter this server supports")


def patient_search(items: Sequence[tuple[str, str]]) -> PatientSearch:
    """Read Patient search parameters."""
    params = _Params(items, repeatable=frozenset())
    name = params.one("name")
    search = PatientSearch(
        ids=_ids(params),
        identifier=_token(params, "identifier"),
        name=name.strip() if name else None,
        paging=_paging(params),
    )
    params.done()
    return search


def device_search(items: Sequence[tuple[str, str]]) -> DeviceSearch:
    """Read Device search parameters."""
    params = _Params(items, repeatable=frozenset())
    search = DeviceSearch(
        ids=_ids(params),
        patient_id=_reference(params, "patient", "Patient"),
        identifier=_token(params, "identifier"),
        paging=_paging(params),
    )
    params.done()
    return search


def metric_search(items: Sequence[tuple[str, str]]) -> MetricSearch:
    """Read DeviceMetric search parameters."""
    params = _Params(items, repeatable=frozenset())
    search = MetricSearch(
        ids=_ids(params),
        device_id=_reference(params, "source", "Device"),
        paging=_paging(params),
    )
    params.done()
    if search.ids is None and search.device_id is None:
        raise InvalidSearch("source", "required (or _id): the device whose metrics to list")
    return search


def observation_search(items: Sequence[tuple[str, str]]) -> ObservationSearch:
    """Read Observation search parameters; a patient (or subject) or a device is required."""
    params = _Params(items, repeatable=frozenset({"date"}))
    patient_id = _subject(params)
    start, end = _dates(params.every("date"))
    sort = params.one("_sort") or "-date"
    if sort not in ("date", "-date"):
        raise InvalidSearch("_sort", "only date and -date are supported")
    search = ObservationSearch(
        ids=_ids(params),
        patient_id=patient_id,
        device_id=_reference(params, "device", "Device"),
        codes=_tokens(params, "code"),
        categories=_tokens(params, "category"),
        start=start,
        end=end,
        newest_first=sort == "-date",
        paging=_paging(params),
    )
    params.done()
    if search.ids is None and search.patient_id is None and search.device_id is None:
        raise InvalidSearch("patient", "required (or subject, device or _id)")
    return search


def lastn(items: Sequence[tuple[str, str]]) -> LastN:
    """Read the parameters of Observation/$lastn; the patient is required."""
    params = _Params(items, repeatable=frozenset())
    patient_id = _subject(params)
    if patient_id is None:
        raise InvalidSearch("patient", "required")
    found = LastN(
        patient_id=patient_id,
        codes=_tokens(params, "code"),
        categories=_tokens(params, "category"),
        max=_integer(params, "max", default=1, most=MAX_LASTN),
    )
    params.done()
    return found


def export(items: Sequence[tuple[str, str]]) -> Export:
    """Read the kick-off parameters of $export (Bulk Data IG)."""
    params = _Params(items, repeatable=frozenset())
    kinds = params.one("_type")
    types = [kind.strip() for kind in kinds.split(",")] if kinds else list(EXPORT_TYPES)
    for kind in types:
        if kind not in EXPORT_TYPES:
            raise InvalidSearch("_type", f"{kind!r} is not exported (only {EXPORT_TYPES})")
    output = params.one("_outputFormat")
    if output is not None and output not in _EXPORT_FORMATS:
        raise InvalidSearch("_outputFormat", "only application/fhir+ndjson is produced")
    since = params.one("_since")
    found = Export(
        types=frozenset(types),
        since=None if since is None else _date_range("_since", since)[0],
    )
    params.done()
    return found


def _paging(params: _Params) -> Paging:
    return Paging(
        count=_integer(params, "_count", default=DEFAULT_COUNT, most=MAX_COUNT),
        cursor=params.one(CURSOR),
    )


def _integer(params: _Params, name: str, *, default: int, most: int) -> int:
    value = params.one(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise InvalidSearch(name, "a whole number of at least 1")
    # R4: the server may return fewer than asked; it caps what one page may cost.
    return min(int(value), most)


def _ids(params: _Params) -> frozenset[str] | None:
    value = params.one("_id")
    if value is None:
        return None
    ids = frozenset(part.strip() for part in value.split(","))
    if not all(FHIR_ID.fullmatch(part) for part in ids):
        raise InvalidSearch("_id", "not a FHIR id")
    return ids


def _subject(params: _Params) -> str | None:
    patient = _reference(params, "patient", "Patient")
    subject = _reference(params, "subject", "Patient")
    if patient is not None and subject is not None and patient != subject:
        raise InvalidSearch("subject", "names another patient than patient")
    return patient or subject


def _reference(params: _Params, name: str, resource_type: str) -> str | None:
    """`Type/id`, an absolute URL ending so, or a bare id."""
    value = params.one(name)
    if value is None:
        return None
    parts = value.rstrip("/").split("/")
    if "," in value:
        raise InvalidSearch(name, "one reference only")
    if len(parts) >= 2 and parts[-2] != resource_type:
        raise InvalidSearch(name, f"must reference a {resource_type}")
    if not FHIR_ID.fullmatch(parts[-1]):
        raise InvalidSearch(name, "not a FHIR id")
    return parts[-1]


def _token(params: _Params, name: str) -> Token | None:
    value = params.one(name)
    if value is None:
        return None
    if "," in value:
        raise InvalidSearch(name, "one value only")
    return _parse_token(name, value)


def _tokens(params: _Params, name: str) -> tuple[Token, ...]:
    value = params.one(name)
    if value is None:
        return ()
    return tuple(_parse_token(name, part) for part in value.split(","))


def _parse_token(name: str, value: str) -> Token:
    system, bar, code = value.partition("|")
    if not bar:
        system, code = "", value
        if not code:
            raise InvalidSearch(name, "empty")
        return Token(None, code)
    if not code:
        raise InvalidSearch(name, "a code is needed after the system")
    return Token(system, code)


def _dates(values: Sequence[str]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Intersect `date` parameters into one [start, end) range."""
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
        if prefix not in ("eq", "ge", "gt", "lt", "le"):
            raise InvalidSearch("date", f"prefix {prefix} is not supported")
        low, high = _date_range("date", text)
        # An instant is gt a value when after all of the value's range, lt when before all of it.
        lower, upper = {
            "eq": (low, high),
            "ge": (low, None),
            "gt": (high, None),
            "lt": (None, low),
            "le": (None, high),
        }[prefix]
        if lower is not None:
            start = lower if start is None else max(start, lower)
        if upper is not None:
            end = upper if end is None else min(end, upper)
    return start, end


def _date_range(name: str, text: str) -> tuple[dt.datetime, dt.datetime]:
    """The instants a FHIR date or dateTime covers at its precision: [low, high).

    2026-01 covers the month, 2026-01-05T10:00Z the minute. A time without a zone is taken as
    UTC (R4 leaves it to the server).
    """
    match = _DATE.fullmatch(text)
    if match is None:
        raise InvalidSearch(name, f"{text!r} is not a FHIR date or dateTime")
    part = match.groupdict()
    try:
        zone = _zone(part["zone"])
        year = int(part["year"])
        if part["month"] is None:
            low = dt.datetime(year, 1, 1, tzinfo=zone)
            return low.astimezone(dt.UTC), low.replace(year=year + 1).astimezone(dt.UTC)
        month = int(part["month"])
        if part["day"] is None:
            low = dt.datetime(year, month, 1, tzinfo=zone)
            days = calendar.monthrange(year, month)[1]
            return low.astimezone(dt.UTC), (low + dt.timedelta(days=days)).astimezone(dt.UTC)
        day = dt.datetime(year, month, int(part["day"]), tzinfo=zone)
        if part["hour"] is None:
            return day.astimezone(dt.UTC), (day + dt.timedelta(days=1)).astimezone(dt.UTC)
        fraction = part["fraction"] or ""
        low = day.replace(
            hour=int(part["hour"]),
            minute=int(part["minute"]),
            second=int(part["second"] or 0),
            microsecond=int(fraction.ljust(6, "0")) if fraction else 0,
        )
        if part["second"] is None:
            width = dt.timedelta(minutes=1)
        else:
            width = dt.timedelta(microseconds=10 ** (6 - len(fraction)))
    except (ValueError, OverflowError) as exc:
        raise InvalidSearch(name, f"{text!r} is not a valid date") from exc
    return low.astimezone(dt.UTC), (low + width).astimezone(dt.UTC)


def _zone(text: str | None) -> dt.tzinfo:
    if text is None or text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
