"""The API's contract: the OpenAPI document made complete, and JSON bodies read strictly.

FastAPI documents what routes return when they succeed and what its own validation answers.
What every route may also answer — no credentials, a missing object, a body too large, a
database too busy — comes from the kernel, so it is added here once, over the route table,
rather than declared by hand on each route: an error answer is `application/problem+json`
with the shared `Problem` schema (or the error body of the standard a path speaks, such as
FHIR's). `tests/contract/` holds the served document to it with schemathesis.

Bodies are parsed by Python's JSON parser, which keeps the last of two equal keys without a
word: `{"role": "nurse", "role": "admin"}` would mean whatever the last parser in a chain of
proxies decides. A repeated key is refused (422, naming it) on every route, by one app-wide
dependency, and by the readings decoder on the hot path.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute

from medcloud.platform.errors import (
    PROBLEM_BASE,
    PROBLEM_JSON,
    ErrorBody,
    FieldError,
    Invalid,
    UnsupportedMediaType,
)
from medcloud.platform.http import get_runtime
from medcloud.platform.ratelimit import RateLimitMiddleware

# Document ----------------------------------------------------------------------------------

PROBLEM_REF = "#/components/schemas/Problem"

PROBLEM_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "title": "Problem",
        "description": "RFC 9457 problem details: what went wrong, and with which fields.",
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {
                "type": "string",
                "pattern": "^" + PROBLEM_BASE.replace(".", r"\.") + "[a-z0-9-]+$",
                "description": "Names the kind of problem; stable, so clients may branch on it.",
            },
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string", "description": "The path that was asked for."},
            "request_id": {"type": "string", "description": "Finds the request in the logs."},
            "errors": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ProblemField"},
            },
        },
        "example": {
            "type": PROBLEM_BASE + "invalid",
            "title": "Invalid request",
            "status": 422,
            "detail": "1 field(s) are invalid: birth_date",
            "instance": "/api/v1/patients",
            "request_id": "5c3f0b7e9a2d4c1b",
            "errors": [{"field": "birth_date", "message": "must not be in the future"}],
        },
    },
    "ProblemField": {
        "title": "ProblemField",
        "description": "One thing wrong with one field, named by its dotted path "
        "(`readings.3.timestamp`, `query.limit`, `header.idempotency-key`).",
        "type": "object",
        "required": ["field", "message"],
        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
    },
}

# What each error answer means, whatever the route.
_MEANINGS = {
    400: "The body is not well-formed JSON or form data.",
    401: "No valid credentials were presented.",
    403: "The credentials do not allow this.",
    404: "No such object, or none the caller may know of.",
    409: "The request clashes with the current state.",
    413: "The body is larger than this operation takes.",
    415: "A content type or encoding this operation does not read.",
    422: "The request is well-formed but a field is not acceptable; `errors` names each.",
    429: "Too many requests; `Retry-After` says how many seconds to wait.",
    503: "A dependency is down or saturated and nothing was done; `Retry-After` says when "
    "to try again.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with.",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}
_WRITES = frozenset({"post", "put", "patch", "delete"})
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# FastAPI's own description of its validation errors, replaced by the problem.
_FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")


@dataclass(frozen=True)
class _Operation:
    """What the route table says about one operation that its document does not."""

    uses_runtime: bool
    """It reads the database, bus or cache, which may be busy (503)."""


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (and from `app.openapi()`)."""
    generate = app.openapi

    def document() -> dict[str, Any]:
        if not getattr(app.state, "contract_complete", False):
            app.openapi_schema = complete(generate(), app)
            app.state.contract_complete = True
        assert app.openapi_schema is not None  # noqa: S101  (set just above)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def complete(document: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """Return `document` with every `$defs` in components and every error answer documented."""
    document = copy.deepcopy(document)
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    _hoist_definitions(document, schemas)
    schemas.update(copy.deepcopy(PROBLEM_SCHEMAS))
    formats: Mapping[str, ErrorBody] = getattr(app.state, "error_formats", {})
    table = dict(_operations(app))
    unlimited = _unlimited_paths(app)
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            facts = table.get((method, path), _Operation(uses_runtime=True))
            statuses = _error_statuses(method, path, operation, facts)
            if unlimited is not None and path not in unlimited:
                statuses.add(429)
            error_body = next(
                (render for prefix, render in formats.items() if path.startswith(prefix)), None
            )
            responses = operation.setdefault("responses", {})
            # A route may declare an error of its own (`responses={400: …}`); it is written
            # like every other, keeping the route's description.
            declared = {int(code): answer for code, answer in responses.items() if code[0] in "45"}
            for status in sorted(statuses | set(declared)):
                response = _error_response(status, error_body)
                if status in declared and status not in statuses:
                    response["description"] = declared[status].get("description", "")
                responses[str(status)] = response
            _json_is_no_string(responses)
    for name in _FASTAPI_SCHEMAS:
        if not _mentions(document, f"#/components/schemas/{name}"):
            schemas.pop(name, None)
    _link_created_objects(document)
    return document


def _link_created_objects(document: dict[str, Any]) -> None:
    """Add OpenAPI links from an answer carrying a new object's `id` to the operations on that
    object: `POST /api/v1/patients` → `GET /api/v1/patients/{patient_id}` and the paths below
    it. Clients (and stateful tests) learn from them how a workflow goes on."""
    paths: dict[str, Any] = document.get("paths", {})
    schemas = document.get("components", {}).get("schemas", {})
    for collection, item in paths.items():
        if "{" in collection:  # links would have to carry the collection's own ids along
            continue
        for method in ("post", "put"):
            operation = item.get(method)
            if operation is None:
                continue
            for status, response in operation.get("responses", {}).items():
                if status.startswith("2") and _carries_id(response, schemas):
                    links = _links_below(collection, paths)
                    if links:
                        response["links"] = links


def _carries_id(response: Mapping[str, Any], schemas: Mapping[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = schemas.get(ref.removeprefix("#/components/schemas/"), {})
    return "id" in schema.get("properties", {})


def _links_below(collection: str, paths: Mapping[str, Any]) -> dict[str, Any]:
    links: dict[str, Any] = {}
    prefix = collection + "/{"
    for path, item in paths.items():
        if not path.startswith(prefix):
            continue
        parameter, _, rest = path.removeprefix(prefix).partition("}")
        if "{" in rest:  # a second id the answer does not carry
            continue
        for method, operation in item.items():
            if method not in _METHODS or "operationId" not in operation:
                continue
            links[operation["operationId"]] = {
                "operationId": operation["operationId"],
                "parameters": {f"path.{parameter}": "$response.body#/id"},
            }
    return links


def _error_statuses(
    method: str, path: str, operation: Mapping[str, Any], facts: _Operation
) -> set[int]:
    statuses: set[int] = set()
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if parameters or has_body:
        statuses.add(422)
    if "{" in path or any(
        parameter.get("in") == "path" or parameter.get("name", "").endswith("_id")
        for parameter in parameters
    ):
        # A path's ids, and a filter naming an object (`?patient_id=`), may name nothing.
        statuses.add(404)
    if has_body:
        statuses |= {400, 413, 415}
    if operation.get("security"):
        # Credentials are checked against the store (a device's token) before anything else
        # the route does. (429 comes from the edge's limiter, added by the caller.)
        statuses |= {401, 403, 503}
        if method in _WRITES:
            statuses.add(409)
    elif parameters or has_body:
        # A public operation that takes input authenticates by what it carries: a password,
        # a refresh or invitation token, a signed link, a provider's signature; a token may
        # also name nothing (404), and sign-in counts failures whatever the edge does (429).
        statuses |= {401, 403, 404, 429}
    if facts.uses_runtime:
        statuses.add(503)
    return statuses


def _unlimited_paths(app: FastAPI) -> frozenset[str] | None:
    """The paths the edge's rate limiter lets through uncounted; None without a limiter."""
    for middleware in app.user_middleware:
        if cast(object, middleware.cls) is RateLimitMiddleware:
            unlimited = cast("Iterable[object]", middleware.kwargs.get("unlimited", ()))
            return frozenset(str(path) for path in unlimited)
    return None


def _error_response(status: int, error_body: ErrorBody | None) -> dict[str, Any]:
    description = _MEANINGS.get(status, HTTPStatus(status).phrase)
    response: dict[str, Any] = {"description": description}
    if error_body is None:
        response["content"] = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
    else:
        # A path speaking another standard writes its errors in that standard's shape; the
        # example is rendered by the very function that writes them.
        content, media_type = error_body(status, "example", description, ())
        response["content"] = {
            media_type: {
                "schema": {"type": "object", "description": "The error in this API's standard."},
                "example": orjson.loads(content),
            }
        }
    if status in _HEADERS:
        response["headers"] = copy.deepcopy(_HEADERS[status])
    return response


def _json_is_no_string(responses: dict[str, Any]) -> None:
    """FastAPI documents the body of a custom response class as a string whatever its media
    type; under a JSON media type (FHIR's `application/fhir+json`) the body is an object."""
    for response in responses.values():
        for media_type, content in response.get("content", {}).items():
            if media_type.endswith("json") and content.get("schema") == {"type": "string"}:
                content["schema"] = {"type": "object"}


def _hoist_definitions(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Move pydantic's local `$defs` (from a schema embedded by hand, say in `openapi_extra`)
    into components, where a `$ref` from anywhere in the document resolves."""

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            definitions = node.pop("$defs", None)
            if definitions is not None:
                _retarget(node, definitions)
                for name, schema in definitions.items():
                    _retarget(schema, definitions)
                    if name in schemas and schemas[name] != schema:
                        raise ValueError(f"two different schemas are both named {name}")
                    schemas[name] = schema
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document.get("paths", {}))
    visit(schemas)


def _retarget(node: Any, definitions: Mapping[str, Any]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            _retarget(value, definitions)
    elif isinstance(node, list):
        for value in node:
            _retarget(value, definitions)


def _mentions(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_mentions(value, ref) for value in node.values())
    if isinstance(node, list):
        return any(_mentions(value, ref) for value in node)
    return False


def _operations(app: FastAPI) -> Iterator[tuple[tuple[str, str], _Operation]]:
    for path, route in _routes(app.router.routes, ""):
        facts = _Operation(uses_runtime=_depends_on_runtime(route.dependant))
        for method in route.methods or ():
            yield (method.lower(), path), facts


def _routes(routes: list[Any], prefix: str) -> Iterator[tuple[str, APIRoute]]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            # FastAPI keeps an included router whole and applies its inclusion's prefix.
            included = getattr(getattr(route, "include_context", None), "prefix", "")
            yield from _routes(route.original_router.routes, prefix + included)


def _depends_on_runtime(dependant: Any) -> bool:
    return any(
        dependency.call is get_runtime or _depends_on_runtime(dependency)
        for dependency in dependant.dependencies
    )


def _body_media_type(route: APIRoute) -> str | None:
    if route.body_field is None:
        return None
    return str(getattr(route.body_field.field_info, "media_type", "application/json"))


# Strict JSON bodies ------------------------------------------------------------------------


class RepeatedKey(Invalid):
    """A JSON object names the same key twice."""

    def __init__(self, field: str) -> None:
        super().__init__(
            f"the key {field} is given more than once",
            errors=[FieldError(field, "this key is given more than once")],
        )


def check_unique_keys(raw: bytes, document: Any) -> None:
    """Raise RepeatedKey when an object in the JSON text `raw` repeats a key.

    `document` is `raw` as a parser read it, keeping one value per key. The check is cheap
    when nothing is repeated, which is nearly always: every key is followed by one `:` outside
    strings, and every `:` inside a string survives parsing and re-serialising, so the text
    has as many colons as the document written back out exactly when no key was dropped. Only
    when the counts differ, or an escape could hide a colon (`\\u003a`), is the text parsed
    again, pair by pair, to find the key.
    """
    if not isinstance(document, dict | list):
        return
    if b"\\u" not in raw:
        try:
            if raw.count(b":") == orjson.dumps(document).count(b":"):
                return
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, or a document too deep
            pass
    try:
        parsed = json.loads(raw, object_pairs_hook=_Pairs.of)
    except (ValueError, RecursionError):  # the caller's parser read it; this one need not
        return
    repeated = _first_repeated(parsed, ())
    if repeated is not None:
        raise RepeatedKey(".".join(str(part) for part in repeated) or "body")


class _Pairs(dict[str, Any]):
    """An object as read pair by pair, remembering a key it was given twice."""

    repeated: str | None = None

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _Pairs:
        obj = cls()
        for key, value in pairs:
            if key in obj and obj.repeated is None:
                obj.repeated = key
            obj[key] = value
        return obj


def _first_repeated(node: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    if isinstance(node, _Pairs):
        if node.repeated is not None:
            return (*path, node.repeated)
        children: Iterator[tuple[str | int, Any]] = iter(node.items())
    elif isinstance(node, list):
        children = iter(enumerate(node))
    else:
        return None
    for key, value in children:
        found = _first_repeated(value, (*path, key))
        if found is not None:
            return found
    return None


def _is_json(content_type: str | None) -> bool:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


async def refuse_repeated_keys(request: Request) -> None:
    """Refuse a JSON body that is not sent as JSON (415) or repeats a key in an object (422).

    FastAPI has parsed the body before dependencies run, so the parsed document is at hand.
    Routes that read their request themselves (the readings hot path) have no body field and
    check their own bodies."""
    route = request.scope.get("route")
    media_type = _body_media_type(route) if isinstance(route, APIRoute) else None
    if media_type != "application/json":
        return
    raw = await request.body()
    if not raw:
        return
    if not _is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType(
            "this operation reads JSON",
            errors=[FieldError("header.content-type", "use application/json")],
        )
    check_unique_keys(raw, await request.json())


STRICT_BODIES = Depends(refuse_repeated_keys)
"""The app-wide dependency that reads JSON bodies strictly (`FastAPI(dependencies=[...])`)."""
