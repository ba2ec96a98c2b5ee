"""Device credentials: rotation with a grace period, revocation, last use, and who may do it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from medcloud.platform.clock import FrozenClock
from medcloud.platform.models import OutboxMessage
from medcloud.platform.security import device_cache_key, hash_device_token
from tests.integration.devices.conftest import authenticates, runtime
from tests.support.client import Api, bearer, eventually

ANY_DEVICE = "00000000-0000-0000-0000-000000000000"


async def rotate(api: Api, user: str, device_id: str, **body: Any) -> httpx.Response:
    return await api.http.post(
        f"/api/v1/devices/{device_id}/credentials/rotate", json=body, headers=bearer(user)
    )


async def rotated(api: Api, user: str, device_id: str, **body: Any) -> dict[str, Any]:
    response = await rotate(api, user, device_id, **body)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


async def revoke(api: Api, user: str, device_id: str) -> httpx.Response:
    return await api.http.post(
        f"/api/v1/devices/{device_id}/credentials/revoke", headers=bearer(user)
    )


async def list_credentials(api: Api, user: str, device_id: str) -> httpx.Response:
    return await api.http.get(f"/api/v1/devices/{device_id}/credentials", headers=bearer(user))


async def credentials(api: Api, user: str, device_id: str) -> list[dict[str, Any]]:
    response = await list_credentials(api, user, device_id)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def let_cache_lapse(api: Api, *tokens: str) -> None:
    """Forget cached verifications, as `device_cache_seconds` passing would."""
    for token in tokens:
        await runtime(api).cache.delete(device_cache_key(hash_device_token(token)))


async def audited(api: Api, action: str) -> list[dict[str, Any]]:
    """Payloads of the audit events with `action` written to the outbox."""
    async with runtime(api).read_sessions() as session:
        bodies = await session.scalars(
            select(OutboxMessage.body).where(OutboxMessage.routing_key == "audit.recorded")
        )
        payloads = [orjson.loads(body)["payload"] for body in bodies]
    return [payload for payload in payloads if payload["action"] == action]


async def test_a_registered_device_authenticates_with_its_first_credential(
    api: Api, alice_admin: str
) -> None:
    device = await api.register_device(alice_admin)
    assert await authenticates(api, device, device["token"])
    [credential] = await credentials(api, alice_admin, device["id"])
    assert credential["expires_at"] is None and credential["revoked_at"] is None


async def test_the_old_token_works_during_the_grace_period_and_not_after(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    device = await api.register_device(alice_admin)
    old = device["token"]
    new = (await rotated(api, alice_admin, device["id"], grace_seconds=600))["token"]
    assert new != old

    clock.advance(seconds=599)
    assert await authenticates(api, device, old)
    assert await authenticates(api, device, new)

    clock.advance(seconds=2)
    await let_cache_lapse(api, old, new)
    assert not await authenticates(api, device, old)
    assert await authenticates(api, device, new)


async def test_a_token_cached_during_the_grace_period_stops_when_it_ends(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    device = await api.register_device(alice_admin)
    old = device["token"]
    await rotated(api, alice_admin, device["id"], grace_seconds=60)

    clock.advance(seconds=59)
    assert await authenticates(api, device, old)  # cached now, for device_cache_seconds
    clock.advance(seconds=2)
    assert not await authenticates(api, device, old)


async def test_a_rotation_without_grace_stops_the_old_token_at_once(
    api: Api, tom_technician: str
) -> None:
    device = await api.register_device(tom_technician)
    old = device["token"]
    assert await authenticates(api, device, old)  # and so cached

    issued = await rotated(api, tom_technician, device["id"], grace_seconds=0)

    assert not await authenticates(api, device, old)
    assert await authenticates(api, device, issued["token"])


async def test_a_rotation_without_a_body_gives_an_hour_of_grace(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    device = await api.register_device(alice_admin)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/credentials/rotate", headers=bearer(alice_admin)
    )
    assert response.status_code == 201, response.text
    issued = response.json()
    hour_later = clock.now() + dt.timedelta(hours=1)
    assert dt.datetime.fromisoformat(issued["previous_valid_until"]) == hour_later
    listed = {c["id"]: c for c in await credentials(api, alice_admin, device["id"])}
    assert listed.pop(issued["id"])["expires_at"] is None
    [previous] = listed.values()
    assert dt.datetime.fromisoformat(previous["expires_at"]) == hour_later


@pytest.mark.parametrize("grace_seconds", [-1, 7 * 24 * 3600 + 1, "soon"])
async def test_a_grace_period_outside_zero_to_seven_days_is_refused(
    api: Api, alice_admin: str, grace_seconds: Any
) -> None:
    device = await api.register_device(alice_admin)
    response = await rotate(api, alice_admin, device["id"], grace_seconds=grace_seconds)
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["grace_seconds"]
    assert len(await credentials(api, alice_admin, device["id"])) == 1


async def test_seven_days_of_grace_is_the_longest(api: Api, alice_admin: str) -> None:
    device = await api.register_device(alice_admin)
    await rotated(api, alice_admin, device["id"], grace_seconds=7 * 24 * 3600)


async def test_revoking_stops_every_token_at_once_even_a_cached_one(
    api: Api, alice_admin: str
) -> None:
    device = await api.register_device(alice_admin)
    old = device["token"]
    new = (await rotated(api, alice_admin, device["id"], grace_seconds=3600))["token"]
    assert await authenticates(api, device, old)
    assert await authenticates(api, device, new)  # both cached a moment ago

    response = await revoke(api, alice_admin, device["id"])

    assert response.status_code == 200, response.text
    assert all(item["revoked_at"] is not None for item in response.json()["items"])
    assert not await authenticates(api, device, old)
    assert not await authenticates(api, device, new)
    assert all(c["revoked_at"] for c in await credentials(api, alice_admin, device["id"]))


async def test_a_rotation_after_revocation_brings_back_only_the_new_token(
    api: Api, alice_admin: str
) -> None:
    device = await api.register_device(alice_admin)
    await revoke(api, alice_admin, device["id"])
    issued = await rotated(api, alice_admin, device["id"], grace_seconds=3600)
    assert not await authenticates(api, device, device["token"])
    assert await authenticates(api, device, issued["token"])


async def test_the_last_use_is_recorded_at_most_once_a_minute(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    device = await api.register_device(alice_admin)
    token = device["token"]

    async def last_used() -> dt.datetime | None:
        [credential] = await credentials(api, alice_admin, device["id"])
        value = credential["last_used_at"]
        return None if value is None else dt.datetime.fromisoformat(value)

    async def recorded(expected: dt.datetime) -> bool:
        async def written() -> bool:  # a moment after the request, off its path
            return await last_used() == expected

        return bool(await eventually(written, timeout=5))

    assert await last_used() is None
    first_use = clock.now()
    assert await authenticates(api, device, token)
    assert await recorded(first_use)

    clock.advance(seconds=30)
    await let_cache_lapse(api, token)
    assert await authenticates(api, device, token)
    await runtime(api).devices.close()  # nothing noted: nothing written
    assert await last_used() == first_use

    clock.advance(seconds=31)
    await let_cache_lapse(api, token)
    assert await authenticates(api, device, token)
    assert await recorded(clock.now())


async def test_another_organisations_device_credentials_are_not_found(
    api: Api, alice_admin: str, mallory_other_org: str
) -> None:
    device = await api.register_device(alice_admin)
    attempts = {
        "list": (
            await list_credentials(api, mallory_other_org, device["id"]),
            await list_credentials(api, mallory_other_org, ANY_DEVICE),
        ),
        "rotate": (
            await rotate(api, mallory_other_org, device["id"], grace_seconds=0),
            await rotate(api, mallory_other_org, ANY_DEVICE, grace_seconds=0),
        ),
        "revoke": (
            await revoke(api, mallory_other_org, device["id"]),
            await revoke(api, mallory_other_org, ANY_DEVICE),
        ),
    }
    for verb, (theirs, nobodys) in attempts.items():
        assert theirs.status_code == 404, (verb, theirs.text)
        # Indistinguishable from a device that does not exist.
        assert theirs.json()["detail"] == nobodys.json()["detail"], verb
    assert await authenticates(api, device, device["token"])
    [credential] = await credentials(api, alice_admin, device["id"])
    assert credential["expires_at"] is None and credential["revoked_at"] is None


@pytest.mark.parametrize("verb", ["rotate", "revoke"])
async def test_a_clinician_may_neither_rotate_nor_revoke(
    api: Api, alice_admin: str, bob_clinician: str, verb: str
) -> None:
    device = await api.register_device(alice_admin)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/credentials/{verb}", headers=bearer(bob_clinician)
    )
    assert response.status_code == 403, response.text
    assert (await list_credentials(api, bob_clinician, device["id"])).status_code == 403
    assert await authenticates(api, device, device["token"])


async def test_a_device_may_not_manage_credentials(api: Api, alice_admin: str) -> None:
    device = await api.register_device(alice_admin)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/credentials/rotate", headers=bearer(device["token"])
    )
    assert response.status_code == 403, response.text


async def test_no_response_shows_a_token_hash(api: Api, tom_technician: str) -> None:
    device = await api.register_device(tom_technician)
    issued = await rotated(api, tom_technician, device["id"], grace_seconds=60)
    texts = [
        (await list_credentials(api, tom_technician, device["id"])).text,
        (await revoke(api, tom_technician, device["id"])).text,
        (
            await api.http.get(f"/api/v1/devices/{device['id']}", headers=bearer(tom_technician))
        ).text,
        (await api.http.get("/api/v1/devices", headers=bearer(tom_technician))).text,
        str(issued),
        str(device),
    ]
    hashes = [hash_device_token(device["token"]), hash_device_token(issued["token"])]
    for text in texts:
        assert "hash" not in text
        assert not any(value in text for value in hashes)


async def test_register_rotate_and_revoke_are_audited(api: Api, alice_admin: str) -> None:
    patient_id = await api.create_patient(alice_admin)
    device = await api.register_device(alice_admin, patient_id=patient_id)
    await rotated(api, alice_admin, device["id"], grace_seconds=60)
    await revoke(api, alice_admin, device["id"])
    for action in ("device.create", "device.credentials.rotate", "device.credentials.revoke"):
        [entry] = await audited(api, action)
        assert entry["actor_id"] == "u-alice"
        assert entry["object_type"] == "device"
        assert entry["object_id"] == device["id"]
        assert entry["patient_id"] == patient_id


async def test_a_refused_rotation_is_not_audited_as_done(
    api: Api, alice_admin: str, mallory_other_org: str
) -> None:
    device = await api.register_device(alice_admin)
    await rotate(api, mallory_other_org, device["id"])
    assert await audited(api, "device.credentials.rotate") == []
