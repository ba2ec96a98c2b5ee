"""The ASGI application factory: the same app for every deployment shape."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from medcloud import __version__
from medcloud.bootstrap import ALL_CONTEXTS, Lifecycle, bootstrap, load_contexts
from medcloud.config import Settings
from medcloud.platform import ops
from medcloud.platform.audit import Outcome, audit_record
from medcloud.platform.errors import DomainError, install_error_handlers
from medcloud.platform.middleware import EdgeMiddleware
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
    app.add_middleware(
        EdgeMiddleware,
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
