"""Turn a request body (JSON or NDJSON, plain or gzip) into readings, naming every problem.

Problems come back with the fragment of input they concern, so the service can keep a refused
reading in quarantine exactly as it was sent.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from medcloud.ingest.schemas import ReadingIn, ReadingsIn
from medcloud.platform.contract import RepeatedKey, check_unique_keys
from medcloud.platform.errors import DomainError, FieldError, TooLarge

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/ndjson"})


class MalformedBody(DomainError):
    """The body is not the JSON (or NDJSON, or gzip) it claims to be."""

    status, slug, title = 400, "malformed-json", "Malformed JSON"


class UnsupportedMediaType(DomainError):
    """A content type or encoding this route does not read."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, and the part of the input it is about."""

    error: FieldError
    fragment: Any
    reason: str
    """A short metrics label: malformed, schema, unknown_type, unknown_unit, …"""


@dataclass(frozen=True)
class Decoded:
    """Readings, whether they came as a batch, and what was wrong (empty: nothing)."""

    readings: list[ReadingIn]
    batch: bool
    problems: list[Problem]
    error: DomainError | None = None
    """What to answer when nothing could be read (a transport that has status codes says 400,
    say, where the gate's refusals are 422)."""


class Undecodable(Exception):
    """The body could not be read at all; carries the problem to quarantine."""

    def __init__(self, problem: Problem, error: DomainError) -> None:
        super().__init__(problem.error.message)
        self.problem = problem
        self.error = error


def inflate(body: bytes, *, limit: int) -> bytes:
    """Decompress a gzip body, refusing (413) one that inflates beyond `limit` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedBody(
            "the body is not valid gzip", errors=[FieldError("body", "not valid gzip")]
        ) from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"the body inflates beyond the limit of {limit} bytes")
    if not inflater.eof:
        raise MalformedBody(
            "the gzip body is truncated", errors=[FieldError("body", "truncated gzip")]
        )
    return out


def media_type(content_type: str | None) -> str:
    """Return the bare media type of a Content-Type header, JSON when absent."""
    if not content_type:
        return "application/json"
    return content_type.split(";", 1)[0].strip().lower()


def decode(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    max_inflated_bytes: int,
    max_readings: int,
) -> Decoded:
    """Read readings from a request body; raise Undecodable when nothing can be read."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = inflate(body, limit=max_inflated_bytes)
    elif encoding != "identity":
        raise UnsupportedMediaType(
            f"content encoding {encoding!r} is not supported; send gzip or none",
            errors=[FieldError("header.content-encoding", "use gzip or identity")],
        )
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        return _ndjson(body, max_readings=max_readings)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type {kind!r} is not supported",
            errors=[
                FieldError("header.content-type", "use application/json or application/x-ndjson")
            ],
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = Problem(FieldError("body", str(exc)), _snippet(body), "malformed")
        raise Undecodable(
            problem,
            MalformedBody("the request body is not valid JSON", errors=[problem.error]),
        ) from exc
    try:
        check_unique_keys(body, document)
    except RepeatedKey as exc:
        raise Undecodable(Problem(exc.errors[0], _snippet(body), "schema"), exc) from exc
    try:
        parsed = ReadingsIn.model_validate(document)
    except ValidationError as exc:
        return Decoded(
            [], isinstance(document, dict) and "readings" in document, _problems(exc, document)
        )
    readings, batch = parsed.as_batch()
    return Decoded(readings, batch, [])


def _ndjson(body: bytes, *, max_readings: int) -> Decoded:
    lines = [line for line in body.split(b"\n") if line.strip()]
    if not lines:
        problem = Problem(FieldError("readings", "no readings in the body"), "", "schema")
        return Decoded([], True, [problem])
    if len(lines) > max_readings:
        problem = Problem(
            FieldError("readings", f"at most {max_readings} readings per request"),
            f"{len(lines)} lines",
            "too_many",
        )
        return Decoded([], True, [problem])
    readings: list[ReadingIn] = []
    problems: list[Problem] = []
    for index, line in enumerate(lines):
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(
                Problem(
                    FieldError(f"readings.{index}", f"not valid JSON: {exc}"),
                    _snippet(line),
                    "malformed",
                )
            )
            continue
        try:
            check_unique_keys(line, document)
        except RepeatedKey as exc:
            field = f"readings.{index}.{exc.errors[0].field}"
            problems.append(Problem(FieldError(field, exc.errors[0].message), document, "schema"))
            continue
        try:
            readings.append(ReadingIn.model_validate(document))
        except ValidationError as exc:
            problems += _problems(exc, document, prefix=("readings", index))
    return Decoded(readings, True, problems)


def _problems(
    exc: ValidationError, document: Any, *, prefix: tuple[str | int, ...] = ()
) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        location = (*prefix, *error.get("loc", ()))
        field = ".".join(str(part) for part in location) or "body"
        problems.append(
            Problem(
                FieldError(field, str(error.get("msg", ""))),
                _fragment(document, location, prefix),
                "schema",
            )
        )
    return problems


def _fragment(document: Any, location: tuple[str | int, ...], prefix: tuple[str | int, ...]) -> Any:
    """The reading an error is about (`readings.N`), or the whole document."""
    if prefix:
        return document
    if (
        len(location) >= 2
        and location[0] == "readings"
        and isinstance(location[1], int)
        and isinstance(document, dict)
        and isinstance(document.get("readings"), list)
        and location[1] < len(document["readings"])
    ):
        return document["readings"][location[1]]
    return document


def _snippet(raw: bytes) -> str:
    return raw[:4096].decode("utf-8", errors="replace")


def decode_or_explain(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    max_inflated_bytes: int,
    max_readings: int,
    field: str,
    fragment: Callable[[], str],
) -> Decoded:
    """Decode like `decode`, but answer a body that cannot be read at all with its problem
    instead of raising: what the MQTT and file transports need, which refuse in their own way.

    `field` names the input in an error without a field of its own (`payload`, `file`), and
    `fragment` gives what to keep in quarantine for it (built only then: MQTT calls this for
    every message).
    """
    try:
        return decode(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_inflated_bytes=max_inflated_bytes,
            max_readings=max_readings,
        )
    except Undecodable as exc:
        return Decoded([], False, [exc.problem])
    except DomainError as exc:  # an unsupported type or encoding, a bad, truncated or huge gzip
        error = exc.errors[0] if exc.errors else FieldError(field, exc.detail)
        reason = {413: "too_large", 415: "unsupported"}.get(exc.status, "malformed")
        return Decoded([], False, [Problem(error, fragment(), reason)])
