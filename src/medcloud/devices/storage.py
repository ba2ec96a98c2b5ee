"""Object storage for firmware images: a small port and its directory adapter."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

CHUNK_BYTES = 64 * 1024
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ObjectTooLarge(Exception):
    """The object exceeds the size limit; nothing was kept."""


@dataclass(frozen=True)
class StoredObject:
    """What was written: its key, size and SHA-256 (hex)."""

    key: str
    size: int
    sha256: str


class ObjectStore(Protocol):
    """Keep blobs by key. Keys are flat names chosen by the server, never by a client."""

    async def put(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredObject:
        """Store a stream under a new key; raise ObjectTooLarge beyond `max_bytes`."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """Yield the object's bytes."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        ...


class DirectoryObjectStore:
    """Objects as files in one directory, written to a temporary name and renamed when whole."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        # Keys are generated here, but checked anyway: a key must never leave the directory.
        if not _KEY.match(key):
            raise ValueError("invalid object key")
        return self._root / key

    async def put(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredObject:
        """Stream into a file, hashing as it goes, and keep it only if it fits."""
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)
        key = uuid.uuid4().hex
        final = self._path(key)
        partial = final.with_name(f"{key}.partial")
        digest = hashlib.sha256()
        size = 0
        handle: IO[bytes] = await asyncio.to_thread(partial.open, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLarge(f"larger than {max_bytes} bytes")
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_flush, handle)
        except BaseException:
            handle.close()
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise
        handle.close()
        await asyncio.to_thread(partial.replace, final)
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """Yield the file in chunks."""
        handle: IO[bytes] = await asyncio.to_thread(self._path(key).open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        """Remove the file if it exists."""
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)


def _flush(handle: IO[bytes]) -> None:
    # An image is referenced by the database only once it is durably on disk.
    handle.flush()
    os.fsync(handle.fileno())
