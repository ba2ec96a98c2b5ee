"""Object storage: a small port, a directory adapter and an S3-compatible adapter.

Keys are hierarchical names (`firmware/<uuid>`, `uploads/<device>/<file>.ndjson`) chosen by the
server or by a trusted gateway, never taken from a request as they are: `check_key` refuses any
key that could leave the store's root, and every adapter calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from medcloud.platform.datadir import make_private_directory, open_private_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

CHUNK_BYTES = 64 * 1024
MAX_KEY_BYTES = 1024
"""S3's limit on a key."""
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=:@,-]{0,254}")
# No segment may start with a dot: that rules out `.` and `..`, and leaves hidden names to the
# directory adapter's partial files, which are therefore never listed as objects.


class InvalidKey(ValueError):
    """The key is not one a store accepts (empty, absolute, `..`, backslash, odd characters)."""


class ObjectNotFound(Exception):
    """No object under this key."""


class ObjectTooLarge(Exception):
    """The object exceeds the size limit; nothing was kept."""


@dataclass(frozen=True)
class StoredObject:
    """What was written: its key, size and SHA-256 (hex)."""

    key: str
    size: int
    sha256: str


def check_key(key: str) -> str:
    """Return `key` if it is a valid object key, else raise InvalidKey.

    A key is segments joined by `/`, each a letter or digit followed by letters, digits and
    `._-+=:@,` (timestamps and `name=value` parts read naturally): never empty, absolute, with
    `..`, a backslash, a space or an empty segment.
    """
    if not key or len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidKey("an object key has 1 to 1024 bytes")
    if not all(_SEGMENT.fullmatch(segment) for segment in key.split("/")):
        raise InvalidKey("an object key is segments of [A-Za-z0-9._+=:@,-] joined by '/'")
    return key


def check_prefix(prefix: str) -> str:
    """Return `prefix` if some valid key could start with it (empty: every key)."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split `s3://bucket/some/prefix` into the bucket and the key prefix (no slashes around)."""
    if not url.startswith("s3://"):
        raise ValueError("an S3 location looks like s3://bucket or s3://bucket/prefix")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise ValueError("the S3 location names no bucket")
    return bucket, check_prefix(prefix)


class ObjectStore(Protocol):
    """Keep blobs by hierarchical key, on a local directory or an S3-compatible service."""

    async def put(
        self, key: str | None, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> StoredObject:
        """Store a stream under `key` (None: a new unique key) whole or not at all; raise
        ObjectTooLarge beyond `max_bytes`."""
        ...

    async def put_bytes(self, key: str, data: bytes) -> StoredObject:
        """Store `data` under `key`, replacing any object there."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks; raise ObjectNotFound if there is none."""
        ...

    async def read_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Return the whole object; raise ObjectTooLarge beyond `max_bytes`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        ...

    async def move(self, source: str, target: str) -> None:
        """Put the object at `source` under `target` (replacing it); raise ObjectNotFound."""
        ...

    async def list(self, prefix: str) -> Sequence[str]:
        """Return the keys starting with `prefix`, oldest first."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether an object is stored under `key`."""
        ...


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _collect(chunks: AsyncIterator[bytes], max_bytes: int | None) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise ObjectTooLarge(f"larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


class DirectoryObjectStore:
    """Objects as files under one directory, written to a hidden temporary name, flushed to
    disk and renamed when whole, so a partial file is never read or listed. Objects are patient
    data and firmware: the directories made are 0700 and the files 0600, whatever the umask."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def put(
        self, key: str | None, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> StoredObject:
        """Stream into a file, hashing as it goes, and keep it only if it fits."""
        key = uuid.uuid4().hex if key is None else key
        final = self._path(key)
        await asyncio.to_thread(make_private_directory, final.parent)
        partial = final.with_name(f".{uuid.uuid4().hex}.partial")
        digest = hashlib.sha256()
        size = 0
        handle: IO[bytes] = await asyncio.to_thread(_create_private, partial)
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

    async def put_bytes(self, key: str, data: bytes) -> StoredObject:
        """Store `data` under `key`, replacing any object there."""
        return await self.put(key, _one(data), max_bytes=len(data))

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """Yield the file in chunks."""
        path = self._path(key)
        try:
            handle: IO[bytes] = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def read_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Return the whole file; raise ObjectTooLarge beyond `max_bytes`."""
        return await _collect(self.read(key), max_bytes)

    async def delete(self, key: str) -> None:
        """Remove the file if it exists."""
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def move(self, source: str, target: str) -> None:
        """Rename the file: atomic, within the one directory tree."""
        await asyncio.to_thread(_rename, self._path(source), self._path(target), source)

    async def list(self, prefix: str) -> Sequence[str]:
        """Return the keys starting with `prefix`, oldest first (by modification time)."""
        return await asyncio.to_thread(self._list, check_prefix(prefix))

    def _list(self, prefix: str) -> Sequence[str]:
        # Walk only the directory the prefix names, not the whole store.
        start = self.root.joinpath(*prefix.split("/")[:-1])
        found: list[tuple[int, str]] = []
        for directory, subdirectories, files in os.walk(start):
            subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
            for name in files:
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                if name.startswith(".") or not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):  # moved away meanwhile
                    found.append((path.stat().st_mtime_ns, key))
        return [key for _, key in sorted(found)]

    async def exists(self, key: str) -> bool:
        """Tell whether a file is stored under `key`."""
        return await asyncio.to_thread(self._path(key).is_file)


def _flush(handle: IO[bytes]) -> None:
    # An object is referenced (by the database, by a queue of uploads) only once it is
    # durably on disk.
    handle.flush()
    os.fsync(handle.fileno())


def _create_private(path: Path) -> IO[bytes]:
    return os.fdopen(open_private_file(path, os.O_WRONLY | os.O_EXCL), "wb")


def _rename(source: Path, target: Path, key: str) -> None:
    if not source.is_file():
        raise ObjectNotFound(key)
    make_private_directory(target.parent)
    try:
        source.replace(target)
    except FileNotFoundError as exc:  # moved by someone else in between
        raise ObjectNotFound(key) from exc


class S3ObjectStore:
    """Objects in a bucket of any S3-compatible service, under an optional key prefix.

    boto3 is synchronous, so every call runs in a worker thread. The client is created on first
    use (creating it reads botocore's service models from disk), and is shared: boto3 clients
    are thread-safe.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if part_bytes < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts are at least 5 MiB")
        self.bucket = bucket
        self.prefix = check_prefix(prefix.strip("/"))
        self._endpoint_url = endpoint_url
        self._region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._part_bytes = part_bytes
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def _s3(self) -> S3Client:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": 5},
                    # Many S3-compatible services (MinIO, Ceph, older releases) accept neither
                    # virtual-host addressing on a bare endpoint nor the newer default checksums.
                    s3={"addressing_style": "path"} if self._endpoint_url else None,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                self._client = boto3.client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    region_name=self._region,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    config=config,
                )
            return self._client

    def _native(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(
        self, key: str | None, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> StoredObject:
        """Stream to the bucket in multipart parts (one request when small), hashing as it goes;
        memory holds one part at a time, and an aborted upload leaves no object."""
        key = uuid.uuid4().hex if key is None else key
        native = self._native(key)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLarge(f"larger than {max_bytes} bytes")
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= self._part_bytes:
                    if upload_id is None:
                        upload_id = await asyncio.to_thread(self._start_multipart, native)
                    parts.append(
                        await asyncio.to_thread(
                            self._upload_part, native, upload_id, len(parts) + 1, bytes(buffer)
                        )
                    )
                    buffer.clear()
            if upload_id is None:
                await asyncio.to_thread(self._put_object, native, bytes(buffer))
            else:
                if buffer:
                    parts.append(
                        await asyncio.to_thread(
                            self._upload_part, native, upload_id, len(parts) + 1, bytes(buffer)
                        )
                    )
                await asyncio.to_thread(self._complete_multipart, native, upload_id, parts)
        except BaseException:
            if upload_id is not None:
                # Parts of an unfinished upload are billed and kept until aborted.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._abort_multipart, native, upload_id)
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def _put_object(self, native: str, data: bytes) -> None:
        self._s3().put_object(Bucket=self.bucket, Key=native, Body=data)

    def _start_multipart(self, native: str) -> str:
        return self._s3().create_multipart_upload(Bucket=self.bucket, Key=native)["UploadId"]

    def _upload_part(
        self, native: str, upload_id: str, number: int, data: bytes
    ) -> CompletedPartTypeDef:
        answer = self._s3().upload_part(
            Bucket=self.bucket, Key=native, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _complete_multipart(
        self, native: str, upload_id: str, parts: Sequence[CompletedPartTypeDef]
    ) -> None:
        self._s3().complete_multipart_upload(
            Bucket=self.bucket,
            Key=native,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    def _abort_multipart(self, native: str, upload_id: str) -> None:
        self._s3().abort_multipart_upload(Bucket=self.bucket, Key=native, UploadId=upload_id)

    async def put_bytes(self, key: str, data: bytes) -> StoredObject:
        """Store `data` under `key` in one request, replacing any object there."""
        await asyncio.to_thread(self._put_object, self._native(key), data)
        return StoredObject(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """Yield the object in chunks as they arrive."""
        native = self._native(key)
        body = await asyncio.to_thread(self._get_body, native, key)
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    def _get_body(self, native: str, key: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self._s3().get_object(Bucket=self.bucket, Key=native)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise ObjectNotFound(key) from exc
            raise

    async def read_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Return the whole object; raise ObjectTooLarge beyond `max_bytes`."""
        return await _collect(self.read(key), max_bytes)

    async def delete(self, key: str) -> None:
        """Remove the object if it exists (S3 deletes are idempotent)."""
        native = self._native(key)
        await asyncio.to_thread(lambda: self._s3().delete_object(Bucket=self.bucket, Key=native))

    async def move(self, source: str, target: str) -> None:
        """Copy within the bucket, then delete the source (S3 has no rename)."""
        await asyncio.to_thread(self._move, self._native(source), self._native(target), source)

    def _move(self, source: str, target: str, key: str) -> None:
        from botocore.exceptions import ClientError

        try:
            # One request copies up to 5 GiB, far beyond anything stored here.
            self._s3().copy_object(
                Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}
            )
        except ClientError as exc:
            if _missing(exc):
                raise ObjectNotFound(key) from exc
            raise
        self._s3().delete_object(Bucket=self.bucket, Key=source)

    async def list(self, prefix: str) -> Sequence[str]:
        """Return the keys starting with `prefix`, oldest first (by last modification)."""
        check_prefix(prefix)
        native = f"{self.prefix}/{prefix}" if self.prefix else prefix
        return await asyncio.to_thread(self._list, native)

    def _list(self, native_prefix: str) -> Sequence[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[tuple[Any, str]] = []
        pages = self._s3().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=native_prefix):
            for item in page.get("Contents", []):
                key = item["Key"][strip:]
                # Objects written by other tools may carry names no store key may have.
                with contextlib.suppress(InvalidKey):
                    found.append((item["LastModified"], check_key(key)))
        return [key for _, key in sorted(found)]

    async def exists(self, key: str) -> bool:
        """Tell whether an object is stored under `key`."""
        return await asyncio.to_thread(self._exists, self._native(key))

    def _exists(self, native: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3().head_object(Bucket=self.bucket, Key=native)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True


def _missing(exc: Any) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}
