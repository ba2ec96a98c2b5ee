"""Relaying an open stream from the app: its status at once, its body as it comes, and an end
when the browser leaves."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from medcloud.platform.security import IN_PROCESS
from medcloud.web.client import stream


async def test_a_stream_is_relayed_as_it_comes_and_stopped_when_closed() -> None:
    seen: list[Scope] = []
    stopped = asyncio.Event()

    async def endless(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            n = 0
            while True:
                await send({"type": "http.response.body", "body": b"%d" % n, "more_body": True})
                n += 1
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    status, body = await stream(endless, "/api/v1/alerts/stream", {"Authorization": "Bearer t"})
    first = [await anext(body), await anext(body)]
    await body.aclose()

    assert status == 200
    assert first == [b"0", b"1"]
    assert seen[0][IN_PROCESS] is True
    assert (b"authorization", b"Bearer t") in seen[0]["headers"]
    await asyncio.wait_for(stopped.wait(), 1)


async def test_a_refused_stream_answers_its_status() -> None:
    async def refusing(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 403, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    status, body = await stream(refusing, "/api/v1/alerts/stream", {})
    await body.aclose()

    assert status == 403


async def test_an_app_that_fails_before_answering_is_a_500() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    status, body = await stream(failing, "/api/v1/alerts/stream", {})

    assert status == 500
    assert [chunk async for chunk in body] == []
