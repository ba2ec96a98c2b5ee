"""A small HTTP/1.1 server on 127.0.0.1 that stands in for an SMS provider or a webhook
receiver: it keeps every request and answers as the test says (or fails, or hangs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    """As sent (name case kept); look up with `header()`."""
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


Answer = tuple[int, dict[str, str], bytes]


@dataclass
class HttpReceiver:
    """Answers each request with `respond(request)`; keeps the requests. One per connection."""

    respond: Callable[[Request], Awaitable[Answer]]
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.rstrip("\r\n").split("\r\n")
            method, target, _ = request_line.split(" ")
            headers = dict(line.split(": ", 1) for line in lines)
            length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
            request = Request(method, target, headers, await reader.readexactly(length))
            self.requests.append(request)
            status, extra, body = await self.respond(request)
            reply = [f"HTTP/1.1 {status} Status", f"Content-Length: {len(body)}"]
            reply += ["Connection: close", *(f"{k}: {v}" for k, v in extra.items())]
            writer.write(("\r\n".join(reply) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


Start = Callable[[Callable[[Request], Awaitable[Answer]]], Awaitable[HttpReceiver]]


def json_answer(status: int, document: object) -> Callable[[Request], Awaitable[Answer]]:
    async def respond(_: Request) -> Answer:
        return status, {"Content-Type": "application/json"}, json.dumps(document).encode()

    return respond


async def hang(_: Request) -> Answer:
    await asyncio.Event().wait()  # until the receiver stops
    raise AssertionError("unreachable")


@asynccontextmanager
async def receivers() -> AsyncIterator[Start]:
    """Start receivers on free ports; stop them all when the block ends."""
    started: list[HttpReceiver] = []

    async def start(respond: Callable[[Request], Awaitable[Answer]]) -> HttpReceiver:
        server = HttpReceiver(respond)
        await server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.stop()
