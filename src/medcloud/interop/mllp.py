"""The MLLP listener: HL7 v2 messages framed as <VT> message <FS><CR>, each answered in turn.

Transport only: what a message means and what to answer is the conversation's (see
`receiver.py`). Everything a sender controls is bounded, so no sender can take the listener
down or hold it: a frame's size, the silence allowed within and between frames, the number of
connections. Bytes before a frame's start are line noise and skipped; a frame that starts again
before it ends was abandoned by a sender that restarted, and only its last start counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

START = b"\x0b"
END = b"\x1c\x0d"


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection."""

    address: str
    port: int


class Conversation(Protocol):
    """What one connection's messages mean: the answer to each, in order."""

    async def answer(self, message: bytes) -> bytes:
        """Return the acknowledgement of one message (its frame removed)."""
        ...

    def too_large(self, beginning: bytes) -> bytes:
        """Return the rejection of a message too large to read, from its first bytes."""
        ...


class MllpServer:
    """Accept MLLP connections and hold each one's conversation."""

    def __init__(
        self,
        converse: Callable[[Peer], Conversation | None],
        *,
        max_message_bytes: int,
        read_timeout_seconds: float,
        idle_timeout_seconds: float,
        max_connections: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`converse` starts a connection's conversation, or refuses the peer with None."""
        self._converse = converse
        self._max_bytes = max_message_bytes
        self._timeout = read_timeout_seconds
        self._idle = idle_timeout_seconds
        self._max_connections = max_connections
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._answering: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        """The port listened on (the one chosen, when asked for port 0)."""
        assert self._server is not None  # noqa: S101  (only asked once started)
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port."""
        self._server = await asyncio.start_server(
            self._connected,
            host,
            port,
            # The reader's buffer bounds a frame: a sender cannot make it hold more.
            limit=self._max_bytes + len(END),
            ssl=self._tls,
        )

    async def close(self) -> None:
        """Stop listening and close every connection. A message being answered is answered
        first (its readings may be committed already, and its sender should hear so); a
        connection waiting for its next message is closed at once."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._connections - self._answering:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101  (asyncio runs each connection as a task)
        try:
            if len(self._connections) >= self._max_connections:
                log.warning("hl7.mllp.too_many_connections", limit=self._max_connections)
                return
            peer = _peer(writer)
            conversation = self._converse(peer)
            if conversation is None:
                log.warning("hl7.mllp.refused", address=peer.address)
                return
            self._connections.add(task)
            await self._converse_with(conversation, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass  # the sender went away or fell silent: what it had answered stands
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self._timeout)

    async def _converse_with(
        self,
        conversation: Conversation,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101
        while not self._closing:
            async with asyncio.timeout(self._idle):
                await _frame_start(reader, self._max_bytes)
            self._answering.add(task)
            try:
                async with asyncio.timeout(self._timeout):
                    frame = await _frame_rest(reader)
                if frame is None:
                    writer.write(START + conversation.too_large(await _beginning(reader)) + END)
                    await writer.drain()
                    return
                answer = await conversation.answer(frame)
                writer.write(START + answer + END)
                await asyncio.wait_for(writer.drain(), self._timeout)
            finally:
                self._answering.discard(task)


async def _frame_start(reader: asyncio.StreamReader, max_skipped: int) -> None:
    """Read up to the next frame's start, skipping what comes before it (bounded)."""
    skipped = 0
    while await reader.readexactly(1) != START:
        skipped += 1
        if skipped > max_skipped:
            raise ConnectionError("no frame start in what was sent")


async def _frame_rest(reader: asyncio.StreamReader) -> bytes | None:
    """Return the rest of a frame's message; None when it is larger than the reader holds."""
    try:
        framed = await reader.readuntil(END)
    except asyncio.LimitOverrunError:
        return None
    message = framed[: -len(END)]
    return message[message.rfind(START) + 1 :]


async def _beginning(reader: asyncio.StreamReader) -> bytes:
    """Return the first bytes of an oversized frame still buffered (enough for its header)."""
    with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return await asyncio.wait_for(reader.read(4096), 1.0)
    return b""


def _peer(writer: asyncio.StreamWriter) -> Peer:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return Peer(str(name[0]), int(name[1]))
    return Peer(str(name or ""), 0)


def tls_context(certificate: str, key: str) -> ssl.SSLContext | None:
    """Return the server TLS context for a PEM certificate and key; None without them."""
    if not certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key or None)
    return context
