"""The object store contract, on a local directory and on an S3-compatible service (moto)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from medcloud.platform.objects import (
    DirectoryObjectStore,
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    S3ObjectStore,
)
from tests.support.s3 import S3Service, moto_s3
from tests.support.waiting import until_true

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Service]:
    with moto_s3() as service:
        yield service


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each kind; the S3 one keeps its keys under a prefix."""
    if request.param == "directory":
        return DirectoryObjectStore(tmp_path / "objects")
    s3: S3Service = request.getfixturevalue("s3")
    return s3.store(s3.create_bucket(), prefix="tenant-a", part_bytes=5 * MiB)


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_a_streamed_object_reads_back_with_its_size_and_digest(store: ObjectStore) -> None:
    stored = await store.put("firmware/image-1", stream(b"abc", b"def"), max_bytes=100)
    assert (stored.key, stored.size) == ("firmware/image-1", 6)
    assert stored.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert b"".join([chunk async for chunk in store.read("firmware/image-1")]) == b"abcdef"
    assert await store.read_bytes("firmware/image-1") == b"abcdef"
    assert await store.exists("firmware/image-1")


async def test_an_object_without_a_key_gets_a_new_one(store: ObjectStore) -> None:
    first = await store.put(None, stream(b"one"), max_bytes=10)
    second = await store.put(None, stream(b"two"), max_bytes=10)
    assert first.key != second.key
    assert await store.read_bytes(first.key) == b"one"


async def test_an_object_over_the_limit_is_refused_and_nothing_is_kept(
    store: ObjectStore,
) -> None:
    with pytest.raises(ObjectTooLarge):
        await store.put("firmware/big", stream(b"12345", b"67890"), max_bytes=7)
    assert not await store.exists("firmware/big")
    assert list(await store.list("")) == []


async def test_a_stream_that_fails_midway_leaves_nothing(store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"half of it"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await store.put("uploads/d1/cut.json", broken(), max_bytes=100)
    assert list(await store.list("")) == []


async def test_a_large_stream_is_stored_in_parts_and_reads_back_whole(store: ObjectStore) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB
    count = 11 * MiB // len(chunk) + 1  # three parts of 5 MiB on S3
    stored = await store.put("firmware/large", stream(*[chunk] * count), max_bytes=20 * MiB)
    assert stored.size == count * len(chunk)
    assert stored.sha256 == hashlib.sha256(chunk * count).hexdigest()
    digest = hashlib.sha256()
    async for part in store.read("firmware/large"):
        digest.update(part)
    assert digest.hexdigest() == stored.sha256


async def test_put_bytes_replaces_what_was_there(store: ObjectStore) -> None:
    await store.put_bytes("quarantine/d1/a.json.report.json", b"first")
    stored = await store.put_bytes("quarantine/d1/a.json.report.json", b"second")
    assert stored.size == 6
    assert await store.read_bytes("quarantine/d1/a.json.report.json") == b"second"


async def test_read_bytes_refuses_an_object_over_the_limit(store: ObjectStore) -> None:
    await store.put_bytes("uploads/d1/a.json", b"x" * 100)
    with pytest.raises(ObjectTooLarge):
        await store.read_bytes("uploads/d1/a.json", max_bytes=99)
    assert len(await store.read_bytes("uploads/d1/a.json", max_bytes=100)) == 100


async def test_a_moved_object_is_found_only_under_its_new_key(store: ObjectStore) -> None:
    await store.put_bytes("uploads/d1/a.ndjson", b"data")
    await store.move("uploads/d1/a.ndjson", "processed/d1/a.ndjson")
    assert await store.read_bytes("processed/d1/a.ndjson") == b"data"
    assert not await store.exists("uploads/d1/a.ndjson")
    assert list(await store.list("uploads/")) == []


async def test_moving_or_reading_a_missing_object_says_it_is_missing(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await store.move("uploads/d1/gone.json", "processed/d1/gone.json")
    with pytest.raises(ObjectNotFound):
        await store.read_bytes("uploads/d1/gone.json")
    assert not await store.exists("uploads/d1/gone.json")
    await store.delete("uploads/d1/gone.json")  # deleting what is not there is fine


async def test_a_deleted_object_is_gone(store: ObjectStore) -> None:
    await store.put_bytes("firmware/old", b"bytes")
    await store.delete("firmware/old")
    assert not await store.exists("firmware/old")


async def test_listing_returns_the_keys_under_a_prefix_only(store: ObjectStore) -> None:
    for key in ("uploads/d1/a.json", "uploads/d2/b.json", "uploadsx/c.json", "processed/d"):
        await store.put_bytes(key, b"{}")
    assert sorted(await store.list("uploads/")) == ["uploads/d1/a.json", "uploads/d2/b.json"]
    assert sorted(await store.list("uploads/d1")) == ["uploads/d1/a.json"]
    assert len(await store.list("")) == 4
    assert list(await store.list("nothing/")) == []


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../escape", "uploads/../../x", "a\\b", "a//b", ".hidden", "a b"]
)
async def test_a_key_that_could_leave_the_root_is_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put_bytes(key, b"no")
    with pytest.raises(InvalidKey):
        await store.read_bytes(key)
    with pytest.raises(InvalidKey):
        await store.move("uploads/d1/a.json", key)


async def test_the_directory_lists_oldest_first_and_never_a_partial_file(tmp_path: Path) -> None:
    store = DirectoryObjectStore(tmp_path)
    await store.put_bytes("uploads/d1/z-first.json", b"1")
    await _after_mtime_of(tmp_path / "uploads" / "d1" / "z-first.json", probe=tmp_path / ".probe")
    await store.put_bytes("uploads/d1/a-second.json", b"2")
    halfway, resume = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"part"
        halfway.set()
        await resume.wait()
        yield b"rest"

    writing = asyncio.create_task(store.put("uploads/d1/in-flight.json", slow(), max_bytes=100))
    await halfway.wait()
    assert list(await store.list("uploads/")) == [
        "uploads/d1/z-first.json",
        "uploads/d1/a-second.json",
    ]
    assert any(path.name.startswith(".") for path in (tmp_path / "uploads" / "d1").iterdir())
    resume.set()
    await writing
    assert (await store.list("uploads/"))[-1] == "uploads/d1/in-flight.json"
    assert not any(path.name.startswith(".") for path in (tmp_path / "uploads" / "d1").iterdir())


async def _after_mtime_of(path: Path, *, probe: Path) -> None:
    """Wait until a file written now gets a later modification time than `path`, writing to
    `probe` (on the same file system) to see: file systems stamp times in steps (a clock tick,
    whole seconds), and files of equal times are listed by name."""
    before = path.stat().st_mtime_ns

    def stamped_later() -> bool:
        probe.write_bytes(b"tick")
        return probe.stat().st_mtime_ns > before

    await until_true(stamped_later, what=f"the file system to stamp a time after {path.name}'s")
    probe.unlink()


async def test_the_s3_store_keeps_its_keys_under_its_prefix(s3: S3Service) -> None:
    bucket = s3.create_bucket()
    store: S3ObjectStore = s3.store(bucket, prefix="tenant-a")
    await store.put_bytes("uploads/d1/a.json", b"{}")
    await store.move("uploads/d1/a.json", "processed/d1/a.json")
    assert s3.keys(bucket) == ["tenant-a/processed/d1/a.json"]
    # Someone else's objects in the same bucket are none of this store's business.
    s3.client().put_object(Bucket=bucket, Key="tenant-b/uploads/d1/b.json", Body=b"{}")
    assert list(await store.list("")) == ["processed/d1/a.json"]


async def test_an_aborted_multipart_upload_leaves_no_parts(s3: S3Service) -> None:
    bucket = s3.create_bucket()
    store = s3.store(bucket, part_bytes=5 * MiB)
    with pytest.raises(ObjectTooLarge):
        await store.put("firmware/big", stream(*[b"x" * MiB] * 7), max_bytes=6 * MiB)
    assert s3.keys(bucket) == []
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
