"""Staged rollouts over a simulated fleet: waves, thresholds, self-pausing, anti-rollback."""

from __future__ import annotations

from typing import Any

from medcloud import simulator
from medcloud.platform.clock import FrozenClock
from tests.integration.devices.fleet import (
    MANUFACTURER,
    MODEL,
    campaign,
    register_model,
    release,
    start_campaign,
)
from tests.support.client import Api, bearer

FLEET = 200


async def roll_out(
    api: Api,
    token: str,
    fleet: list[simulator.DeviceState],
    campaign_id: str,
    *,
    failure_share: float,
    ticks: int = 12,
) -> tuple[dict[str, Any], simulator.UpdateStats]:
    """Let the fleet check for updates, one interval at a time, until the campaign stops."""
    plan, stats = simulator.FailurePlan(failure_share), simulator.UpdateStats()
    state = await campaign(api, token, campaign_id)
    for _ in range(ticks):
        if state["status"] != "running":
            break
        await simulator.fleet_tick(api.http, fleet, plan=plan, stats=stats, heartbeats=False)
        state = await campaign(api, token, campaign_id)
    return state, stats


async def test_a_campaign_with_few_failures_completes_and_one_with_many_pauses_after_wave_one(
    api: Api, alice_admin: str, clock: FrozenClock
) -> None:
    vendor = await register_model(api, alice_admin)
    devices = await simulator.register_fleet(
        api.http,
        alice_admin,
        FLEET,
        prefix="FLEET",
        model=MODEL,
        manufacturer=MANUFACTURER,
        firmware_version="1.0.0",
        patients=False,
    )
    fleet = [simulator.DeviceState(device, "1.0.0") for device in devices]

    first = await start_campaign(
        api, alice_admin, vendor, await release(api, alice_admin, vendor, "2.0.0")
    )
    assert first["wave_sizes"] == [2, 20, 100, 200]
    done, stats = await roll_out(api, alice_admin, fleet, first["id"], failure_share=0.02)

    assert done["status"] == "completed", done
    assert done["current_wave"] == 3
    assert done["targets"] == {"succeeded": 196, "failed": 2, "rolled_back": 2}
    assert (stats.succeeded, stats.failed, stats.rolled_back) == (196, 2, 2)
    on_new = await api.http.get(
        "/api/v1/devices",
        params={"firmware_version": "2.0.0", "limit": 500},
        headers=bearer(alice_admin),
    )
    assert len(on_new.json()["items"]) == 196

    second = await start_campaign(
        api, alice_admin, vendor, await release(api, alice_admin, vendor, "3.0.0")
    )
    assert second["targets"] == {"pending": FLEET}
    paused, stats = await roll_out(api, alice_admin, fleet, second["id"], failure_share=0.30)

    assert paused["status"] == "paused", paused
    assert paused["current_wave"] == 0
    assert "error threshold" in paused["status_reason"]
    assert stats.offered == 2
    assert paused["targets"]["pending"] == FLEET - 2
    # Paused: nobody else is offered the image.
    offer = await api.http.get(
        f"/api/v1/devices/{fleet[-1].device.id}/firmware/update",
        headers=bearer(fleet[-1].device.token),
    )
    assert offer.status_code == 204
