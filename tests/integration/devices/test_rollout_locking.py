"""A campaign paused or cancelled while its devices ask for, report and time out updates.

Every path that locks a campaign and its devices' updates takes the campaign first; the old
order (update first, campaign when the update finished) deadlocked against a cancel, which
holds the campaign and then withdraws the updates not yet started. On SQLite writers take turns,
so this only checks the outcome there; on PostgreSQL the race is real.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from medcloud.devices import updates
from medcloud.platform.clock import FrozenClock
from medcloud.platform.security import Role, UserPrincipal
from tests.integration.devices.conftest import ST_MARY, runtime
from tests.integration.devices.fleet import (
    MANUFACTURER,
    MODEL,
    campaign,
    register_model,
    release,
    start_campaign,
)
from tests.support.client import Api, bearer

ROUNDS = 8
FLEET = 9
"""A third each: already on the new version (offers skip them), mid-install (they report the
outcome, or the sweep times them out), and not yet offered (they take the offer)."""


def admin(api: Api) -> str:
    """Alice's token, minted afresh: the test moves the clock past a token's life."""
    return runtime(api).tokens.issue(UserPrincipal("u-alice", ST_MARY, Role.ADMIN))


async def fleet_of(api: Api) -> list[dict[str, Any]]:
    devices = []
    for index in range(FLEET):
        response = await api.http.post(
            "/api/v1/devices",
            json={"serial_number": f"LOCK-{index}", "model": MODEL, "manufacturer": MANUFACTURER},
            headers=bearer(admin(api)),
        )
        assert response.status_code == 201, response.text
        device: dict[str, Any] = response.json()
        expect(await beat(api, device, firmware_version="1.0.0"), 200)
        devices.append(device)
    return devices


async def beat(api: Api, device: dict[str, Any], **body: Any) -> httpx.Response:
    return await api.http.post(
        f"/api/v1/devices/{device['id']}/heartbeat", json=body, headers=bearer(device["token"])
    )


async def offer(api: Api, device: dict[str, Any]) -> httpx.Response:
    return await api.http.get(
        f"/api/v1/devices/{device['id']}/firmware/update", headers=bearer(device["token"])
    )


async def report(api: Api, device: dict[str, Any], campaign_id: str, status: str) -> httpx.Response:
    return await api.http.post(
        f"/api/v1/devices/{device['id']}/firmware/progress",
        json={"campaign_id": campaign_id, "status": status},
        headers=bearer(device["token"]),
    )


async def change(api: Api, campaign_id: str, action: str) -> httpx.Response:
    return await api.http.post(
        f"/api/v1/campaigns/{campaign_id}/{action}", headers=bearer(admin(api))
    )


def expect(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.request.url, response.text)


async def take_offer(api: Api, device: dict[str, Any], campaign_id: str) -> None:
    response = await offer(api, device)
    expect(response, 200, 204)  # 204 once the campaign is paused or cancelled
    if response.status_code == 200:
        expect(await report(api, device, campaign_id, "downloading"), 200)


async def finish(
    api: Api, device: dict[str, Any], campaign_id: str, version: str, *, by_heartbeat: bool
) -> bool:
    """Have the device end its install on `version`; tell whether a report was acknowledged."""
    if by_heartbeat:
        # The device restarted on the new version and says so in its heartbeat.
        expect(await beat(api, device, firmware_version=version), 200)
        return False
    response = await report(api, device, campaign_id, "succeeded")
    expect(response, 200, 409)  # 409 when the sweep timed the update out first
    return response.status_code == 200


async def skip(api: Api, device: dict[str, Any]) -> None:
    expect(await offer(api, device), 204)


async def sweep(api: Api) -> None:
    """One pass of the monitor's timeout sweep."""
    await updates.time_out_updates(uow=runtime(api).uow(), settings=runtime(api).settings)


async def test_pausing_or_cancelling_races_device_reports_and_the_sweep_without_deadlock(
    api: Api, clock: FrozenClock
) -> None:
    vendor = await register_model(api, admin(api))
    fleet = await fleet_of(api)
    current, installing, fresh = fleet[0::3], fleet[1::3], fleet[2::3]
    timeout = runtime(api).settings.devices.update_timeout_seconds

    for round_ in range(ROUNDS):
        version = f"1.{round_ + 1}.0"
        image_id = await release(api, admin(api), vendor, version)
        started = await start_campaign(
            api, admin(api), vendor, image_id, waves=[100], override_maintenance_window=True
        )
        assert started["targets"] == {"pending": FLEET}, started
        campaign_id = started["id"]
        for device in installing:
            expect(await offer(api, device), 200)
            expect(await report(api, device, campaign_id, "installing"), 200)
        for device in current:
            # On the new version already, by other means: the offer will skip it.
            expect(await beat(api, device, firmware_version=version), 200)
        if round_ % 2:
            # The installs have been silent past the timeout: the sweep joins the race.
            clock.advance(seconds=timeout + 1)

        stopped, _, _, finished = await asyncio.gather(
            change(api, campaign_id, "pause" if round_ % 3 else "cancel"),
            sweep(api),
            asyncio.gather(
                *(take_offer(api, device, campaign_id) for device in fresh),
                *(skip(api, device) for device in current),
            ),
            asyncio.gather(
                *(
                    finish(api, device, campaign_id, version, by_heartbeat=bool(i % 2))
                    for i, device in enumerate(installing)
                )
            ),
        )
        expect(stopped, 200)
        # The fresh devices' downloads keep the campaign from completing: it can still cancel.
        expect(await change(api, campaign_id, "cancel"), 200)

        done = await campaign(api, admin(api), campaign_id)
        assert done["status"] == "cancelled", done
        targets = done["targets"]
        # Each install ended once, as succeeded or timed out, and a success the device was told
        # of was not overwritten by the sweep.
        assert targets.get("succeeded", 0) + targets.get("timed_out", 0) == len(installing)
        assert targets.get("succeeded", 0) >= sum(finished), targets
        assert sum(targets.values()) == FLEET, targets
