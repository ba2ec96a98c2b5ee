"""The ASGI application factory: the same app for every deployment shape."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from medcloud import __version__, web
from medcloud.bootstrap import ALL_CONTEXTS, Lifecycle, bootstrap, load_contexts
from medcloud.config import Settings
from medcloud.platform import contract, ops
from medcloud.platform.audit import Outcome, audit_record
from medcloud.platform.errors import DomainError, install_error_handlers
from medcloud.platform.http import edge_principal
from medcloud.platform.middleware import EdgeMiddleware
from medcloud.platform.ratelimit import RateLimitMiddleware
from medcloud.platform.runtime import Runtime


def create_app(
    settings: Settings | None = None,
    contexts: Sequence[str] = ALL_CONTEXTS,
    *,
    workers: bool = True,
    runtime: Runtime | None = None,
) -> FastAPI:
    """Build the app mounting `contexts`; with `workers` it also runs their consumers and relay."""
    settings = settings or Settings()
    selected = load_contexts(contexts)
    runtime = runtime or bootstrap(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        lifecycle = Lifecycle(runtime, selected)
        await lifecycle.start(migrate_first=settings.migrate_on_start, workers=workers)
        try:
            yield
        finally:
            await lifecycle.stop()

    app = FastAPI(
        title="medcloud",
        version=__version__,
        summary="Cloud platform for connected medical devices",
        lifespan=lifespan,
        # Served by `ops.docs_router` instead, which the production profile keeps to operators.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[contract.STRICT_BODIES],
    )
    app.state.runtime = runtime
    app.state.on_denied = functools.partial(record_denial, runtime)
    install_error_handlers(
        app, {prefix: body for c in selected for prefix, body in c.error_formats.items()}
    )
    # Routing tries routers in order, and a device's readings are nearly every request: the
    # ingest routes go first. No two contexts' paths overlap, so the order changes nothing else.
    for context in sorted(selected, key=lambda c: c.name != "ingest"):
        if context.router is not None:
            app.include_router(context.router)
    app.include_router(ops.router)
    contract.install(app)
    app.include_router(ops.docs_router)
    if web.NEEDS <= {context.name for context in selected}:
        # Last, so that no page can take a request meant for the API; the pages call the API
        # in-process, so only a process serving the contexts they read mounts them.
        web.install(app)
    if runtime.rate_limiter is not None:
        # Innermost: a refusal is stamped, logged and given CORS headers like any answer, and
        # preflights, which CORS answers itself, spend nothing.
        app.add_middleware(
            RateLimitMiddleware,
            limiter=runtime.rate_limiter,
            identify=functools.partial(edge_principal, runtime),
            unlimited=[route.path for route in ops.router.routes if isinstance(route, APIRoute)],
        )
    # Inside the edge, so that preflight answers carry the request id and security headers.
    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_credentials=settings.http.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"],
            expose_headers=[
                "Location",
                "Retry-After",
                "RateLimit",
                "RateLimit-Policy",
                "X-Request-ID",
                "X-Service-Version",
            ],
            max_age=settings.http.cors_max_age_seconds,
        )
    app.add_middleware(
        EdgeMiddleware,
        hsts_seconds=settings.http.hsts_seconds,
        metrics=runtime.metrics,
        version=f"{settings.service_name}/{__version__}",
        max_body_bytes=settings.max_body_bytes,
        large_bodies=[body for context in selected for body in context.large_bodies(settings)],
    )
    return app


async def record_denial(runtime: Runtime, request: Request, error: DomainError) -> None:
    """Put a refused request in the audit log: who, what route, which object, why."""
    route = request.scope.get("route")
    async with runtime.uow() as uow:
        uow.publish(
            audit_record(
                getattr(request.state, "principal", None),
                "access.denied",
                occurred_at=uow.clock.now(),
                object_type="route",
                object_id=f"{request.method} {getattr(route, 'path', 'unmatched')}",
                outcome=Outcome.DENIED,
                detail={"status": error.status, "path_params": dict(request.path_params)},
            )
        )
        await uow.commit()
