"""Domain errors, and their one mapping to RFC 9457 problem details."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

log = structlog.get_logger(__name__)

PROBLEM_BASE = "https://medcloud.dev/problems/"
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field; `field` is a dotted path such as `readings.3.timestamp`."""

    field: str
    message: str


class DomainError(Exception):
    """A use case refused; subclasses say how the refusal maps to HTTP."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = headers or {}
        self.audited = False
        """Set when the use case already recorded the refusal in the audit log."""

    @property
    def denies_access(self) -> bool:
        """Tell whether this is a refusal of access, which the audit log must record."""
        return isinstance(self, Unauthorized | Forbidden | OutOfScope)


class Invalid(DomainError):
    """The request is well-formed but its content is not acceptable."""

    status, slug, title = 422, "invalid", "Invalid request"


class NotFound(DomainError):
    """No such object, or none the caller may know of."""

    status, slug, title = 404, "not-found", "Not found"


class OutOfScope(NotFound):
    """The object exists but lies outside the caller's reach; answered exactly like NotFound."""


class Conflict(DomainError):
    """The request clashes with the current state."""

    status, slug, title = 409, "conflict", "Conflict"


class Unauthorized(DomainError):
    """No valid credentials."""

    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str = "valid credentials are required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(DomainError):
    """Valid credentials, but not for this."""

    status, slug, title = 403, "forbidden", "Forbidden"


class TooManyRequests(DomainError):
    """The caller must slow down; `Retry-After` says for how long."""

    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class TooLarge(DomainError):
    """The request body exceeds the limit."""

    status, slug, title = 413, "too-large", "Request body too large"


class UnsupportedMediaType(DomainError):
    """A content type or encoding this route does not read."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class Unavailable(DomainError):
    """A dependency is down or saturated; try again later."""

    status, slug, title = 503, "unavailable", "Service unavailable"


ErrorBody = Callable[[int, str, str, Sequence[FieldError]], tuple[bytes, str]]
"""Render an error (status, slug, detail, field errors) as a body and its media type."""


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    request: Request | None = None,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """Build an application/problem+json response, or the error body of the standard the
    request's path speaks (see `install_error_handlers`)."""
    if request is not None:
        formats: dict[str, ErrorBody] = getattr(request.app.state, "error_formats", {})
        for prefix, render in formats.items():
            if request.url.path.startswith(prefix):
                content, media_type = render(status, slug, detail, errors)
                return Response(content, status_code=status, media_type=media_type, headers=headers)
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _field_path(loc: Sequence[int | str]) -> str:
    # Body fields are named as in the document ("readings.3.timestamp"), the way services name
    # them too; other parts keep their prefix ("query.limit", "path.device_id").
    parts = list(loc[1:] if loc[:1] == ("body",) and len(loc) > 1 else loc)
    return ".".join(str(part) for part in parts)


DeniedHook = Callable[[Request, DomainError], Awaitable[None]]


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)  # noqa: S101  (registered for DomainError only)
    on_denied: DeniedHook | None = getattr(request.app.state, "on_denied", None)
    if exc.denies_access and not exc.audited and on_denied is not None:
        try:
            await on_denied(request, exc)
        except Exception:  # the refusal stands even if it cannot be recorded
            log.exception("audit.denied_not_recorded")
    return problem_response(
        status=exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        request=request,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        return problem_response(
            status=400,
            slug="malformed-json",
            title="Malformed JSON",
            detail="the request body is not valid JSON",
            request=request,
            errors=[FieldError("body", str(raw[0].get("msg", "invalid JSON")))],
        )
    errors = [FieldError(_field_path(e.get("loc", ())), str(e.get("msg", ""))) for e in raw]
    return problem_response(
        status=422,
        slug="invalid",
        title="Invalid request",
        detail=f"{len(errors)} field(s) are invalid: " + ", ".join(e.field for e in errors[:5]),
        request=request,
        errors=errors,
    )


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    slugs = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 413: "too-large"}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the one route it tried; a path served by several
        # routes (GET and POST /users) must list them all (RFC 9110, 15.5.6).
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem_response(
        status=exc.status_code,
        slug=slugs.get(exc.status_code, "http-error"),
        title=str(exc.detail) if exc.status_code != 404 else "Not found",
        detail=str(exc.detail),
        request=request,
        headers=headers,
    )


_PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Return every method some route of the app serves at the request's path."""
    allowed = []
    for method in _PROBED_METHODS:
        # A scope of its own per probe: matching writes routing state into the scope.
        probe = {
            "type": "http",
            "method": method,
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "headers": request.scope.get("headers", []),
            "query_string": request.scope.get("query_string", b""),
        }
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _come_back_later(request: Request, exc: Exception, event: str, detail: str) -> Response:
    log.warning(event, error=type(exc).__name__)
    return problem_response(
        status=503,
        slug="unavailable",
        title="Service unavailable",
        detail=detail,
        request=request,
        headers={"Retry-After": "1"},
    )


async def _on_database_busy(request: Request, exc: Exception) -> Response:
    # The database is unreachable or saturated (pool exhausted, SQLite's writer lock held past
    # its busy timeout): nothing was written, so the client is told to come back, as the
    # writer's own backpressure does, rather than that the server failed.
    return _come_back_later(
        request,
        exc,
        "request.database_unavailable",
        "the database is busy or unreachable; nothing was stored, try again",
    )


# SQLSTATEs of a database that is not there for the moment: connection exceptions (class 08),
# and a server shutting down, crashed or still starting up (57P01, 57P02, 57P03).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")


def _database_unreachable(exc: sqlalchemy.exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    cause = getattr(exc.orig, "__cause__", None)
    state = getattr(exc.orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_UNREACHABLE_STATES)


async def _on_database_error(request: Request, exc: Exception) -> Response:
    # A connection lost or refused mid-request (the server restarted, failed over) wrote
    # nothing: the transaction is rolled back with it.
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and _database_unreachable(exc):
        return await _on_database_busy(request, exc)
    return await _on_unexpected(request, exc)


async def _on_connection_refused(request: Request, exc: Exception) -> Response:
    # A service medcloud needs (its database, broker or cache) refused or dropped the
    # connection before anything was done.
    return _come_back_later(
        request,
        exc,
        "request.dependency_unavailable",
        "a service medcloud depends on is unreachable; nothing was stored, try again",
    )


INTERNAL_ERROR = ("internal", "Internal error", "the server failed; the request id identifies it")
"""(slug, title, detail) of a 500: nothing of the failure itself reaches the caller."""


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Reached only by an app without the HTTP edge, which answers these itself (with its
    # headers, which an answer from here, outside every middleware, would lack).
    log.exception("request.failed", error=type(exc).__name__)
    slug, title, detail = INTERNAL_ERROR
    return problem_response(status=500, slug=slug, title=title, detail=detail, request=request)


def install_error_handlers(app: FastAPI, formats: Mapping[str, ErrorBody] | None = None) -> None:
    """Map every error the app can raise to problem+json.

    `formats` maps a path prefix to the error body of the standard spoken there (FHIR's
    OperationOutcome under /fhir/): contexts hand them in as callables, so the kernel renders
    every error in this one place, audits refusals alike, and never imports a context.
    """
    app.state.error_formats = dict(formats or {})
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _on_database_busy)
    app.add_exception_handler(sqlalchemy.exc.InterfaceError, _on_database_busy)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, _on_database_busy)
    app.add_exception_handler(sqlalchemy.exc.DBAPIError, _on_database_error)
    app.add_exception_handler(ConnectionRefusedError, _on_connection_refused)
    app.add_exception_handler(ConnectionResetError, _on_connection_refused)
    # The shared cache (token revocations, device look-ups): unreachable means try again.
    app.add_exception_handler(redis.exceptions.ConnectionError, _on_connection_refused)
    app.add_exception_handler(redis.exceptions.TimeoutError, _on_connection_refused)
    app.add_exception_handler(Exception, _on_unexpected)
