"""Edge middleware as one plain ASGI layer: request id, version header, body limit, metrics, logs.

Written against ASGI directly rather than as BaseHTTPMiddleware because it sits on the hot path
of every reading and must not buffer bodies or spawn tasks.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medcloud.platform.audit import RequestContext, reset_request_context, set_request_context
from medcloud.platform.errors import INTERNAL_ERROR, PROBLEM_BASE, PROBLEM_JSON, problem_response
from medcloud.platform.metrics import Metrics

log = structlog.get_logger("medcloud.http")

# Responses carry patient data: never cached by intermediaries or browsers, never sniffed,
# never framed by another site.
SECURITY_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
# An answer that is not a page of ours (JSON, NDJSON, a file) has nothing to load or run if a
# browser is tricked into rendering it. Pages set their own policy, which this one leaves be.
API_CONTENT_POLICY = (
    b"content-security-policy",
    b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
)

_REQUEST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class BodyTooLarge(HTTPException):
    """Raised inside `receive` when a streamed body passes the limit.

    An HTTPException, so that FastAPI's body parsing lets it through as a 413 rather than
    turning it into a generic 400.
    """

    def __init__(self) -> None:
        super().__init__(413, "the request body exceeds the size limit")


class EdgeMiddleware:
    """Stamp, limit, measure and log every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        version: str,
        max_body_bytes: int,
        large_bodies: Sequence[tuple[str, int]] = (),
        hsts_seconds: int = 0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.version = version.encode()
        self.max_body = max_body_bytes
        # Only over TLS (uvicorn takes the scheme from a trusted proxy's X-Forwarded-Proto):
        # sent over plain HTTP the header is ignored by browsers, and a wrong one locks a
        # site out of HTTP for the max-age.
        self.hsts = (
            (b"strict-transport-security", f"max-age={hsts_seconds}; includeSubDomains".encode())
            if hsts_seconds > 0
            else None
        )
        # (path pattern, limit) for the few routes that take more, e.g. firmware images.
        self.large_bodies = [(re.compile(pattern), limit) for pattern, limit in large_bodies]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        extra_headers = [
            (b"x-request-id", request_id.encode()),
            (b"x-service-version", self.version),
            *SECURITY_HEADERS,
        ]
        if self.hsts is not None and scope.get("scheme") == "https":
            extra_headers.append(self.hsts)
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == API_CONTENT_POLICY[0] for name, _ in headers):
                    headers.append(API_CONTENT_POLICY)
                message["headers"] = [*headers, *extra_headers]
            await send(message)

        limit = next(
            (size for pattern, size in self.large_bodies if pattern.fullmatch(scope["path"])),
            self.max_body,
        )
        declared = _content_length(scope)
        client = scope.get("client")
        context = set_request_context(
            RequestContext(request_id=request_id, source_ip=client[0] if client else None)
        )
        try:
            if declared is not None and declared > limit:
                raise BodyTooLarge
            await self.app(scope, self._limited(receive, limit), send_wrapper)
        except BodyTooLarge:
            if started:
                raise
            status = 413
            await _problem(
                send_wrapper,
                413,
                "too-large",
                "Request body too large",
                f"the body exceeds the limit of {limit} bytes",
            )
        except Exception as exc:
            # Answered here rather than by Starlette's outermost handler, so that a 500 too
            # carries the request id that finds it in the logs, and the security headers.
            if started:
                raise
            status = 500
            log.exception("request.failed", request_id=request_id, error=type(exc).__name__)
            slug, title, detail = INTERNAL_ERROR
            answer = problem_response(
                status=500, slug=slug, title=title, detail=detail, request=Request(scope)
            )
            await answer(scope, receive, send_wrapper)
        finally:
            reset_request_context(context)
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            elapsed = time.perf_counter() - start
            self.metrics.http_requests.labels(method, endpoint, str(status)).inc()
            self.metrics.http_duration.labels(method, endpoint).observe(elapsed)
            # Route templates, never raw paths or bodies: logs must carry no patient data.
            log.info(
                "http.request",
                request_id=request_id,
                method=method,
                endpoint=endpoint,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )

    @staticmethod
    def _limited(receive: Receive, limit: int) -> Receive:
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        return limited_receive


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            # Echo only ids that are safe to put in logs and headers.
            if 0 < len(candidate) <= 128 and set(candidate) <= _REQUEST_ID_OK:
                return candidate
    return str(uuid.uuid4())


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _problem(send: Send, status: int, slug: str, title: str, detail: str) -> None:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
