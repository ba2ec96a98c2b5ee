"""The edge's body limits: one for everything, larger ones only where a route declares it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from medcloud.app import create_app
from medcloud.config import Settings
from medcloud.devices.api import FIRMWARE_CONTENT
from medcloud.platform.metrics import Metrics
from medcloud.platform.middleware import EdgeMiddleware


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def client(limit: int, large: int) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/{path:path}", echo_size, methods=["POST", "PUT"])])
    edge = EdgeMiddleware(
        app,
        metrics=Metrics(),
        version="t",
        max_body_bytes=limit,
        large_bodies=[(FIRMWARE_CONTENT, large)],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://t")


async def test_bodies_over_the_limit_are_refused_except_where_a_route_allows_more() -> None:
    body = b"x" * 2048
    async with client(limit=1024, large=4096) as http:
        refused = await http.post("/api/v1/devices/d/data", content=body)
        assert refused.status_code == 413
        assert refused.headers["content-type"] == "application/problem+json"
        firmware = await http.put("/api/v1/device-models/m/firmware/1.2.0/content", content=body)
        assert firmware.json() == {"size": 2048}
        too_big = await http.put(
            "/api/v1/device-models/m/firmware/1.2.0/content", content=b"x" * 5000
        )
        assert too_big.status_code == 413
        lookalike = await http.put("/api/v1/device-models/m/firmware/1.2.0/content/x", content=body)
        assert lookalike.status_code == 413


def test_the_app_takes_its_large_bodies_from_the_contexts_it_mounts(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)

    def large_bodies(contexts: list[str]) -> list[tuple[str, int]]:
        app = create_app(settings, contexts, workers=False)
        (edge,) = [m for m in app.user_middleware if cast(object, m.cls) is EdgeMiddleware]
        return list(cast(Sequence[tuple[str, int]], edge.kwargs["large_bodies"]))

    assert large_bodies(["devices"]) == [(FIRMWARE_CONTENT, settings.devices.firmware_max_bytes)]
    assert large_bodies(["ingest"]) == []
