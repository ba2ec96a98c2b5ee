"""The route table: which context serves each path, read from the contexts' own routers.

Every gateway configuration (nginx, Kong, the Kubernetes Ingress) is rendered from this one
table, so a route added to a context reaches the edge without anyone editing a proxy file.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from medcloud.bootstrap import ALL_CONTEXTS, load_contexts
from medcloud.config import Settings
from medcloud.platform import ops
from medcloud.platform.http import current_principal

_PARAMETER = re.compile(r"\{[^}/]+\}")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Caller(enum.Enum):
    """Who may call a route, as far as an edge can tell before medcloud looks."""

    ANYONE = "anyone"
    """No credentials: probes, keys, sign-in, signed links."""
    USER = "user"
    """A person's access token (a JWT any edge can verify against the JWKS)."""
    DEVICE_OR_USER = "device-or-user"
    """A device's opaque token or a person's JWT: only medcloud can tell them apart."""


@dataclass(frozen=True)
class Route:
    """One path of the API and the context that serves it."""

    context: str
    path: str
    """The path as the router declares it, `{name}` for each parameter."""
    methods: frozenset[str]
    caller: Caller
    stream: bool = False
    """Whether the answer is a server-sent event stream, open for as long as the client stays."""

    @property
    def literal(self) -> bool:
        """Whether the path has no parameter, so a proxy can match it exactly."""
        return _PARAMETER.search(self.path) is None

    @property
    def pattern(self) -> str:
        """The path as an anchored regular expression that nginx, Kong and Python all read."""
        parts = _PARAMETER.split(self.path)
        return "^" + "[^/]+".join(re.escape(part).replace("\\/", "/") for part in parts) + "$"

    @property
    def sample(self) -> str:
        """A path the route serves: each parameter given a value."""
        return _PARAMETER.sub("x", self.path)

    @property
    def idempotent(self) -> bool:
        """Whether a proxy may send the request again to another replica after a failure."""
        return self.methods <= _IDEMPOTENT


@dataclass(frozen=True)
class RouteTable:
    """The API's routes by context, most specific first, and the limits the edge enforces."""

    routes: tuple[Route, ...]
    max_body_bytes: int
    large_bodies: tuple[tuple[str, int], ...]
    """(anchored path pattern, limit in bytes) of routes whose bodies may be larger."""

    @property
    def paths(self) -> dict[str, list[Route]]:
        """The routes grouped by path, in the table's order."""
        grouped: dict[str, list[Route]] = {}
        for route in self.routes:
            grouped.setdefault(route.path, []).append(route)
        return grouped

    @property
    def contexts(self) -> list[str]:
        """The contexts that serve at least one route, in the table's order."""
        return list(dict.fromkeys(route.context for route in self.routes))

    def served_by(self, context: str) -> list[Route]:
        """The routes of one context."""
        return [route for route in self.routes if route.context == context]

    def body_limit(self, route: Route) -> int | None:
        """The route's own body limit, where it takes more than `max_body_bytes`."""
        return next(
            (limit for pattern, limit in self.large_bodies if re.fullmatch(pattern, route.sample)),
            None,
        )


def route_table(settings: Settings, contexts: Sequence[str] = ALL_CONTEXTS) -> RouteTable:
    """Read the routes of `contexts` from their routers; no I/O, nothing started."""
    # One entry per path and caller: a path may be public for one method and not another.
    by_path: dict[tuple[str, Caller], Route] = {}
    for context in load_contexts(contexts):
        if context.router is None:
            continue
        for route in _api_routes(context.router.routes):
            _add(by_path, context.name, route)
    # Probes and metrics are every process's own and are scraped from each one directly; the
    # verification keys are public and served by whichever process issues tokens.
    for route in _api_routes(ops.router.routes):
        if route.path == "/.well-known/jwks.json" and "identity" in contexts:
            _add(by_path, "identity", route)
    large = tuple(
        ("^" + pattern.removeprefix("^").removesuffix("$") + "$", limit)
        for context in load_contexts(contexts)
        for pattern, limit in context.large_bodies(settings)
    )
    routes = tuple(sorted(by_path.values(), key=_specificity))
    _check_apart(routes)
    return RouteTable(
        routes=routes,
        max_body_bytes=settings.max_body_bytes,
        large_bodies=large,
    )


def _api_routes(routes: Iterable[object]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # a router included in another, kept apart
            yield from _api_routes(route.original_router.routes)


def _add(by_path: dict[tuple[str, Caller], Route], context: str, route: APIRoute) -> None:
    for (path, _), known in by_path.items():
        if path == route.path and known.context != context:
            # A proxy routes by path; two contexts sharing one could not run apart.
            raise ValueError(f"{route.path} is served by both {known.context} and {context}")
    key = (route.path, _caller(route))
    same = by_path.get(key)
    methods = frozenset(route.methods or ()) | (same.methods if same else frozenset())
    stream = any(
        "text/event-stream" in answer.get("content", {}) for answer in route.responses.values()
    )
    by_path[key] = Route(
        context=context,
        path=route.path,
        methods=methods,
        caller=key[1],
        stream=stream or (same.stream if same else False),
    )


def _caller(route: APIRoute) -> Caller:
    calls = list(_calls(route.dependant))
    if any(getattr(call, "medcloud_action", None) is not None for call in calls):
        return Caller.USER
    # The readings route authenticates its caller itself, for speed, and says so in its
    # OpenAPI security like any other protected route.
    if current_principal in calls or (route.openapi_extra or {}).get("security"):
        return Caller.DEVICE_OR_USER
    return Caller.ANYONE


def _calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _check_apart(routes: Sequence[Route]) -> None:
    # Every proxy matches a literal path exactly before trying patterns (nginx `location =`,
    # ingress-nginx `Exact`, Kong's higher regex priority), so `/alerts/stream` may sit beside
    # `/alerts/{alert_id}` of another service. Patterns are tried in different orders (nginx
    # in the file's, ingress-nginx longest first): no two services' patterns may overlap, so
    # that every proxy sends a request to the same service.
    patterns = [route for route in routes if not route.literal]
    for route in patterns:
        for other in patterns:
            if other.context != route.context and re.fullmatch(other.pattern, route.sample):
                raise ValueError(f"{route.path} ({route.context}) also matches {other.path}")


def _specificity(route: Route) -> tuple[int, int, str]:
    # A literal path before any pattern, and of two patterns the one with more literal
    # segments first: `/users/me` must not be taken by `/users/{user_id}`.
    segments = route.path.strip("/").split("/")
    literal_segments = sum(1 for segment in segments if not _PARAMETER.fullmatch(segment))
    return (0 if route.literal else 1, -literal_segments, route.path)
