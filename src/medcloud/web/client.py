"""The dashboard's way to the API: the same requests an API client sends, made in-process.

Every page is rendered from API answers obtained with the signed-in user's bearer token, so the
API's authentication, policy, care-team scoping and audit decide what a page shows: a 403 or a
404 from the API is the page's answer. Requests go through the whole app (edge middleware
included) over `httpx.ASGITransport`; an open stream, which that transport would buffer for
ever, is relayed by calling the app as an ASGI application directly (`stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medcloud.platform.security import IN_PROCESS

_BASE = "http://medcloud.internal"
log = structlog.get_logger(__name__)


class ApiRefused(Exception):
    """The API answered a page's request with an error; the page answers the same."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail

    @classmethod
    def of(cls, response: httpx.Response) -> ApiRefused:
        """Read the problem+json the API answered with, tolerating any other body."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        title = str(body.get("title") or response.reason_phrase or "Error")
        return cls(response.status_code, title, str(body.get("detail") or ""))


@dataclass
class Tokens:
    """A user's session as the API issued it."""

    access: str
    refresh: str | None = None


def _marked(app: ASGIApp) -> ASGIApp:
    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, IN_PROCESS: True}, receive, send)

    return marked


class Api:
    """One page's conversation with the API on behalf of one user.

    An expired access token is renewed once with the refresh token; `renewed` then holds the
    new pair, which the page must hand back to the browser (the API rotates refresh tokens, so
    the old one is spent).
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: Tokens | None,
        *,
        client: tuple[str, int] | None = None,
        may_renew: bool = True,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.renewed: Tokens | None = None
        self.client = client
        self._may_renew = may_renew

    def _http(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=_marked(self.app), client=self.client or ("127.0.0.1", 0)
        )
        return httpx.AsyncClient(transport=transport, base_url=_BASE, timeout=30.0)

    def _headers(self) -> dict[str, str]:
        if self.tokens is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens.access}"}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request as the user; renew the session once if the token has expired."""
        async with self._http() as http:
            response = await http.request(method, path, headers=self._headers(), **kwargs)
            if response.status_code == 401 and await self._renew(http):
                response = await http.request(method, path, headers=self._headers(), **kwargs)
        return response

    async def _renew(self, http: httpx.AsyncClient) -> bool:
        if not self._may_renew or self.tokens is None or not self.tokens.refresh:
            return False
        self._may_renew = False
        answer = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": self.tokens.refresh}
        )
        if answer.status_code != 200:
            return False
        body = answer.json()
        self.tokens = self.renewed = Tokens(body["access_token"], body["refresh_token"])
        return True

    async def get(self, path: str, **params: Any) -> Any:
        """GET a JSON answer, raising `ApiRefused` for any error status."""
        clean = {k: v for k, v in params.items() if v is not None}
        response = await self.request("GET", path, params=clean)
        if response.status_code >= 400:
            raise ApiRefused.of(response)
        return response.json()

    async def get_or_none(self, path: str, **params: Any) -> Any:
        """GET a JSON answer that a page can do without (a forecast, a role's extra figures)."""
        try:
            return await self.get(path, **params)
        except ApiRefused:
            return None

    async def post(self, path: str, json: Any = None) -> Any:
        """POST a JSON body, raising `ApiRefused` for any error status."""
        response = await self.request("POST", path, json=json)
        if response.status_code >= 400:
            raise ApiRefused.of(response)
        return response.json() if response.content else None


async def stream(
    app: ASGIApp,
    path: str,
    headers: Mapping[str, str],
    *,
    client: tuple[str, int] | None = None,
) -> tuple[int, AsyncGenerator[bytes]]:
    """Open a GET on the app and return its status and its body as it comes (an SSE stream).

    The app runs in a task for as long as the body is read; closing the iterator, as a server
    does when the browser goes away, cancels it.
    """
    chunks: asyncio.Queue[Message] = asyncio.Queue()
    disconnected = asyncio.Event()
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": client or ("127.0.0.1", 0),
        "server": ("medcloud.internal", 80),
        IN_PROCESS: True,
    }

    async def receive() -> Message:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await chunks.put(message)

    async def run() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(run())
    first = asyncio.ensure_future(chunks.get())
    await asyncio.wait({first, task}, return_when=asyncio.FIRST_COMPLETED)
    if not first.done():  # the app ended without answering
        first.cancel()
        error = None if task.cancelled() else task.exception()
        log.error("web.stream_failed", path=path, error=type(error).__name__)
        return 500, _nothing()
    status = int(first.result().get("status", 500))

    async def body() -> AsyncGenerator[bytes]:
        try:
            while True:
                message = await chunks.get()
                if message["type"] != "http.response.body":
                    continue
                if message.get("body"):
                    yield bytes(message["body"])
                if not message.get("more_body", False):
                    return
        finally:
            disconnected.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return status, body()


async def _nothing() -> AsyncGenerator[bytes]:
    return
    yield b""  # pragma: no cover  (makes this an async generator)
