"""Event streams (Server-Sent Events) read as a browser reads them, from a real HTTP server:
an in-process transport would wait for a stream's end before handing over any of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
import uvicorn

from medcloud.app import create_app
from medcloud.config import Settings
from tests.support.client import Api
from tests.support.processes import free_port
from tests.support.waiting import until_true


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Api]:
    """Serve medcloud on a free port with uvicorn, as in production, and yield a client."""
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())

    def listening() -> bool:
        if task.done() and not server.started:
            task.result()  # raise why it stopped, if it says
            raise AssertionError("uvicorn stopped before it started listening")
        return bool(server.started)

    await until_true(listening, what="uvicorn to listen", timeout=30, interval=0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield Api(http=http, app=app)
    finally:
        server.should_exit = True
        await task


async def read_events(
    api: Api,
    path: str,
    headers: Mapping[str, str],
    *,
    count: int,
    opened: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Read `count` events (comments and positions alone skipped) from a new stream at `path`;
    set `opened` once the stream has sent its first line."""
    found: list[dict[str, Any]] = []
    async with api.http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if opened is not None:
                opened.set()
            if line.startswith("id: "):
                event["id"] = line[4:]
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = orjson.loads(line[6:])
            elif line == "":
                if "event" in event:
                    found.append(event)
                    if len(found) == count:
                        return found
                event = {}
    return found
