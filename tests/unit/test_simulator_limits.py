"""The simulator's clients wait out a rate limit instead of failing the fleet."""

from __future__ import annotations

import httpx

from medcloud.simulator import WaitOutLimits


async def test_a_429_is_waited_out_and_the_request_sent_again() -> None:
    seen: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        if len(seen) < 3:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(201, json={"ok": True})

    transport = WaitOutLimits(httpx.MockTransport(answer))
    async with httpx.AsyncClient(transport=transport, base_url="http://medcloud.test") as client:
        response = await client.post("/api/v1/devices", json={"serial_number": "PO-1"})
    assert response.status_code == 201
    assert seen == [b'{"serial_number":"PO-1"}'] * 3


async def test_after_its_tries_the_429_is_the_answer() -> None:
    calls = 0

    def answer(_request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, headers={"Retry-After": "soon"})

    transport = WaitOutLimits(httpx.MockTransport(answer), tries=2, longest_wait_seconds=0.01)
    async with httpx.AsyncClient(transport=transport, base_url="http://medcloud.test") as client:
        response = await client.get("/api/v1/devices")
    assert response.status_code == 429
    assert calls == 2
