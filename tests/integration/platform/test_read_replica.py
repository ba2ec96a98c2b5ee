"""With `MEDCLOUD_DATABASE_READ_URL` set, lists and charts are read from a PostgreSQL streaming
replica, while writes, and the reads that must see them (a thing just made, the look-ups before
a write, the audit of every read), stay on the primary.

The replica here is a real one, made with pg_basebackup from a primary of the test's own. Its
replay is paused to make it lag: what the primary answers and what the replica answers then
differ, which shows which of them each request went to.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from medcloud.config import IdentitySettings, RateLimitSettings, Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, RELAXED_LIMITS
from tests.support.client import Api, bearer, eventually, reading, running
from tests.support.replica import Pair, missing_binaries, primary_and_replica

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    missing = missing_binaries()
    assert not missing, f"a streaming replica needs {missing}"
    # Not under pytest's own temporary directory, which only root may enter: when the tests
    # run as root, the servers run as `postgres`.
    with tempfile.TemporaryDirectory(prefix="medcloud-replica-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)
        with primary_and_replica(directory) as started:
            yield started


@pytest.fixture
async def api(pair: Pair, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=pair.primary_url,
        database_read_url=pair.replica_url,
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        identity=IdentitySettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        rate_limits=RateLimitSettings(
            default=RELAXED_LIMITS, ingest=RELAXED_LIMITS, anonymous=RELAXED_LIMITS
        ),
    )
    async with running(settings) as started:
        yield started


async def _listed_devices(api: Api, token: str) -> set[str]:
    response = await api.http.get("/api/v1/devices", headers=bearer(token))
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


async def _chart_count(api: Api, token: str, device_id: str) -> int:
    response = await api.http.get(
        f"/api/v1/devices/{device_id}/data/buckets", params={"bucket": 3600}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    return sum(int(bucket["count"]) for bucket in response.json()["items"])


async def test_lists_and_charts_come_from_the_replica_and_fresh_reads_from_the_primary(
    api: Api, pair: Pair
) -> None:
    assert await pair.in_recovery()
    ready = await api.http.get("/ready")
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok", "cache": "ok", "replica": "ok"}
    token = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
    first = await api.register_device(token, serial="REPLICA-1")
    assert (await api.send(first, reading(heart_rate=72))).status_code == 201
    # Caught up, the replica answers lists and readings with everything the primary holds.
    assert await eventually(lambda: _has(api, token, first["id"], readings=1))

    await pair.pause_replay()
    try:
        second = await api.register_device(token, serial="REPLICA-2")
        # A device just made is read on the primary: its own page finds it at once.
        made = await api.http.get(f"/api/v1/devices/{second['id']}", headers=bearer(token))
        assert made.status_code == 200, made.text
        # The device's own token is checked on the primary too: it can send straight away.
        assert (await api.send(second, reading(heart_rate=80))).status_code == 201
        assert (await api.send(first, reading(heart_rate=75))).status_code == 201
        # The list and the readings come from the paused replica, which has none of it yet.
        assert second["id"] not in await _listed_devices(api, token)
        assert len(await api.readings(token, first["id"])) == 1
        assert await _chart_count(api, token, first["id"]) == 1
        # Reading is audited on the primary, which the paused replica does not hold up.
        audit = await api.http.get(
            "/api/v1/audit", params={"action": "readings.read"}, headers=bearer(token)
        )
        assert audit.status_code == 200, audit.text
    finally:
        await pair.resume_replay()

    assert await eventually(lambda: _has(api, token, first["id"], readings=2))
    assert second["id"] in await _listed_devices(api, token)
    assert await _chart_count(api, token, first["id"]) == 2


async def _has(api: Api, token: str, device_id: str, *, readings: int) -> bool:
    found: list[dict[str, Any]] = await api.readings(token, device_id)
    return len(found) == readings and device_id in await _listed_devices(api, token)


def test_a_read_url_needs_postgresql_as_the_primary(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="database_read_url"):
        Settings(var_dir=tmp_path, database_read_url="postgresql+asyncpg://replica/medcloud")
