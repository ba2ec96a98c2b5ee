"""An MLLP sender, as a monitor gateway is one: frames HL7 v2 messages and reads the answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

START, END = b"\x0b", b"\x1c\x0d"


@dataclass
class Sender:
    """One MLLP connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, message: str, *, timeout: float = 30) -> str:
        """Send one message (segments joined by \\r) and return its acknowledgement."""
        self.writer.write(START + message.encode() + END)
        await self.writer.drain()
        return await self.answer(timeout=timeout)

    async def answer(self, *, timeout: float = 30) -> str:
        """Read the next acknowledgement."""
        framed = await asyncio.wait_for(self.reader.readuntil(END), timeout)
        return framed[framed.index(START) + 1 : -len(END)].decode()

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (a broken frame, line noise)."""
        self.writer.write(data)
        await self.writer.drain()


@contextlib.asynccontextmanager
async def connected(port: int, host: str = "127.0.0.1") -> AsyncIterator[Sender]:
    """Connect to the listener; close when the block ends."""
    reader, writer = await asyncio.open_connection(host, port, limit=2**22)
    try:
        yield Sender(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def listening(port: int, *, timeout: float = 30) -> None:
    """Wait until something accepts connections on the port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


def segments(ack: str) -> dict[str, list[str]]:
    """Split an acknowledgement into its segments' fields, by segment name (the last of each)."""
    return {segment[:3]: segment.split("|") for segment in ack.split("\r") if segment}
