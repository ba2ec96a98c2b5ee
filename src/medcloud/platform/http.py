"""FastAPI dependencies: the only place the framework meets the runtime (`UowDep`, `Authorize`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import cookie_parser
from starlette.types import Scope

from medcloud.config import Settings
from medcloud.platform.clock import Clock
from medcloud.platform.errors import Forbidden, Unauthorized
from medcloud.platform.metrics import Metrics
from medcloud.platform.policy import Action, authorize
from medcloud.platform.revocation import ensure_not_revoked
from medcloud.platform.runtime import Runtime
from medcloud.platform.security import (
    ACCESS_COOKIE,
    DEVICE_TOKEN_PREFIX,
    DevicePrincipal,
    Principal,
    UnknownSigningKey,
    UserPrincipal,
    device_cache_key,
    hash_device_token,
)
from medcloud.platform.uow import UnitOfWork

_bearer = HTTPBearer(auto_error=False)


# Every dependency here is `async def`, however little it does: FastAPI calls a plain `def`
# dependency on a worker thread, and that hop, a thread switch and a fight for the GIL with the
# event loop, cost more than the dependency itself (a tenth of a millisecond each, several per
# request). tests/unit/test_architecture.py keeps it so.


def runtime_of(request: Request) -> Runtime:
    """Return the process runtime the app was started with."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    """Return the process runtime, as a dependency."""
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(runtime: RuntimeDep) -> UnitOfWork:
    """Return a fresh unit of work; the service enters and commits it."""
    return runtime.uow()


async def get_query_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """Yield a read-only session for queries that must see every commit (a thing just made)."""
    async with runtime.read_sessions() as session:
        yield session


async def get_list_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """Yield a read-only session for lists, which the read replica answers when there is one."""
    async with runtime.replica_sessions() as session:
        yield session


async def get_settings(runtime: RuntimeDep) -> Settings:
    """Return the settings."""
    return runtime.settings


async def get_clock(runtime: RuntimeDep) -> Clock:
    """Return the clock."""
    return runtime.clock


async def get_metrics(runtime: RuntimeDep) -> Metrics:
    """Return the metrics."""
    return runtime.metrics


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
QueryDep = Annotated[AsyncSession, Depends(get_query_session)]
ListDep = Annotated[AsyncSession, Depends(get_list_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def current_principal(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the bearer token as a device or a user."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    principal = await _authenticated(request, runtime, credentials.credentials)
    request.state.principal = principal
    return principal


async def bearer_principal(request: Request, runtime: Runtime) -> Principal:
    """`current_principal` for a route that reads its request itself (the readings hot path,
    where FastAPI's dependency resolution was a quarter of the server's time)."""
    token = _bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise Unauthorized("a bearer token is required")
    principal = await _authenticated(request, runtime, token)
    request.state.principal = principal
    return principal


_EDGE_ANSWER = "edge_authentication"
"""Where `edge_principal` leaves (token, principal or error) in the request's state."""


async def edge_principal(runtime: Runtime, scope: Scope) -> Principal | None:
    """Authenticate a request's bearer token before routing, for the rate limiter to know whose
    request it is; None without one, or when it fails. The route's own authentication takes
    this answer, or raises its error, rather than asking again."""
    authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    token = _bearer_token(authorization.decode("latin-1"))
    if token is None and not scope["path"].startswith(("/api/", "/fhir/")):
        token = _cookie(scope, ACCESS_COOKIE)  # a dashboard page is its user's request
    if token is None:
        return None
    state = scope.setdefault("state", {})
    try:
        principal = await _authenticate(runtime, token)
    except Exception as error:  # noqa: BLE001  (a route that needs a principal raises it)
        state[_EDGE_ANSWER] = (token, error)
        return None
    state[_EDGE_ANSWER] = (token, principal)
    return principal


async def _authenticated(request: Request, runtime: Runtime, token: str) -> Principal:
    answer: tuple[str, Principal | Exception] | None = request.scope.get("state", {}).get(
        _EDGE_ANSWER
    )
    if answer is None or answer[0] != token:
        return await _authenticate(runtime, token)
    if isinstance(answer[1], Exception):
        raise answer[1]
    return answer[1]


def _cookie(scope: Scope, name: str) -> str | None:
    cookies = [v for k, v in scope["headers"] if k == b"cookie"]
    if not cookies:
        return None
    return cookie_parser(b"; ".join(cookies).decode("latin-1")).get(name)


def _bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _authenticate(runtime: Runtime, token: str) -> Principal:
    if token.startswith(DEVICE_TOKEN_PREFIX):
        return await _device_principal(runtime, token)
    try:
        principal = runtime.tokens.verify(token)
    except UnknownSigningKey:
        # A verify-only service learns a rotated key from the JWKS, then tries once more.
        if not await runtime.refresh_token_keys():
            raise
        principal = runtime.tokens.verify(token)
    await ensure_not_revoked(runtime.cache, principal)
    return principal


async def _device_principal(runtime: Runtime, token: str) -> DevicePrincipal:
    token_hash = hash_device_token(token)
    key = device_cache_key(token_hash)
    now = runtime.clock.now()
    cached = await runtime.cache.get(key)
    if cached is not None:
        data = orjson.loads(cached)
        # Checked against the runtime clock too: the cache's own expiry keeps another clock.
        if data.get("expires_at") is None or data["expires_at"] > now.timestamp():
            since = data.get("patient_since")
            return DevicePrincipal(
                data["id"],
                data["organisation_id"],
                data["patient_id"],
                None if since is None else dt.datetime.fromtimestamp(since, dt.UTC),
            )
    device = await runtime.devices.by_token_hash(token_hash)
    if device is None:
        raise Unauthorized("unknown device token")
    ttl = runtime.settings.device_cache_seconds
    if device.expires_at is not None:
        # A cached token must not outlive its credential (the end of a rotation's grace period).
        ttl = min(ttl, (device.expires_at - now).total_seconds())
    if ttl > 0:
        expires = device.expires_at.timestamp() if device.expires_at is not None else None
        await runtime.cache.set(
            key,
            orjson.dumps(
                {
                    "id": device.id,
                    "organisation_id": device.organisation_id,
                    "patient_id": device.patient_id,
                    "patient_since": (
                        None if device.patient_since is None else device.patient_since.timestamp()
                    ),
                    "expires_at": expires,
                }
            ),
            ttl_seconds=ttl,
        )
    return DevicePrincipal(
        device.id, device.organisation_id, device.patient_id, device.patient_since
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def Authorize(action: Action) -> Any:  # noqa: N802  (reads as a type in `Annotated`)
    """`Annotated` metadata for a user allowed by the policy to perform `action`."""

    async def dependency(principal: CurrentPrincipal) -> UserPrincipal:
        authorize(principal, action)
        if not isinstance(principal, UserPrincipal):
            raise Forbidden("this needs a user, not a device")
        return principal

    dependency.__name__ = f"authorize_{action.name.lower()}"
    # The access-matrix test reads this to know which action a route performs.
    dependency.medcloud_action = action  # type: ignore[attr-defined]
    return Depends(dependency)
