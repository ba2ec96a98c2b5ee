"""A fleet of simulated bedside devices that stream realistic vitals to any medcloud deployment."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


class WaitOutLimits(httpx.AsyncBaseTransport):
    """Wait out a 429 for as long as its Retry-After asks, then send again, a few times over.

    One admin registering a fleet, or a console polling it, meets the per-user rate limit
    (100 a minute): the deployment is right to say so, and the client's part is to wait, not
    to fail the whole fleet."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        tries: int = 4,
        longest_wait_seconds: float = 65.0,
    ) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._tries = tries
        self._longest_wait = longest_wait_seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(self._tries - 1):
            response = await self._inner.handle_async_request(request)
            if response.status_code != 429:
                return response
            await response.aclose()
            try:
                wait = float(response.headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            await asyncio.sleep(min(max(wait, 0.1), self._longest_wait))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Vitals:
    """One patient's vitals as a slow random walk around a personal baseline."""

    rng: random.Random
    heart_rate: float = 72.0
    spo2: float = 97.0
    respiratory_rate: float = 15.0
    temperature: float = 36.8
    episode_left: int = 0
    episode_rate: float = 0.0

    @classmethod
    def baseline(cls, rng: random.Random) -> Vitals:
        """Draw a plausible adult baseline."""
        return cls(
            rng=rng,
            heart_rate=rng.uniform(58, 92),
            spo2=rng.uniform(94.5, 99),
            respiratory_rate=rng.uniform(12, 18),
            temperature=rng.uniform(36.4, 37.3),
        )

    def start_episode(self) -> None:
        """Begin a short tachycardia or bradycardia episode."""
        self.episode_left = self.rng.randint(3, 8)
        self.episode_rate = (
            self.rng.uniform(128, 165) if self.rng.random() < 0.75 else self.rng.uniform(30, 38)
        )

    def step(self, abnormal_probability: float) -> dict[str, float]:
        """Advance one tick and return the measurements a monitor would send."""
        rng = self.rng
        if self.episode_left == 0 and rng.random() < abnormal_probability:
            self.start_episode()
        self.heart_rate += rng.gauss(0, 1.2) - (self.heart_rate - 75) * 0.05
        self.spo2 = min(100.0, self.spo2 + rng.gauss(0, 0.3) - (self.spo2 - 97) * 0.1)
        self.respiratory_rate += rng.gauss(0, 0.4) - (self.respiratory_rate - 15) * 0.1
        self.temperature += rng.gauss(0, 0.02) - (self.temperature - 36.9) * 0.05
        heart_rate = self.heart_rate
        if self.episode_left > 0:
            self.episode_left -= 1
            heart_rate = self.episode_rate + rng.gauss(0, 2)
        return {
            "heart_rate": round(heart_rate),
            "spo2": round(self.spo2, 1),
            "respiratory_rate": round(self.respiratory_rate),
            "temperature": round(self.temperature, 1),
        }


@dataclass
class FleetStats:
    """What the fleet has sent so far."""

    sent: int = 0
    accepted: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulatedDevice:
    """A registered device and its token."""

    id: str
    token: str
    serial_number: str


async def admin_token(client: httpx.AsyncClient, email: str, password: str) -> str:
    """Sign in and return an access token."""
    response = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


async def register_fleet(
    client: httpx.AsyncClient,
    token: str,
    count: int,
    *,
    prefix: str | None = None,
    model: str = "BedsideMonitor 3",
    manufacturer: str = "medcloud simulator",
    firmware_version: str | None = None,
    patients: bool = True,
    ward_id: str | None = None,
) -> list[SimulatedDevice]:
    """Register `count` simulated monitors (serials are unique per run unless `prefix` is given).

    With `patients`, each is assigned to a simulated patient of its own, in `ward_id` if given.
    """
    prefix = prefix or f"SIM-{int(time.time())}"
    devices = []
    headers = {"Authorization": f"Bearer {token}"}
    for index in range(count):
        serial = f"{prefix}-{index + 1:03d}"
        patient_id = None
        if patients:
            patient = await client.post(
                "/api/v1/patients",
                json={
                    "identifier_system": "urn:medcloud:simulator",
                    "identifier_value": serial,
                    "family_name": "Simulated",
                    "given_name": f"Patient {index + 1}",
                    "birth_date": "1950-01-01",
                    "ward_id": ward_id,
                },
                headers=headers,
            )
            patient.raise_for_status()
            patient_id = patient.json()["id"]
        body: dict[str, str | None] = {
            "serial_number": serial,
            "model": model,
            "manufacturer": manufacturer,
            "patient_id": patient_id,
        }
        if firmware_version is not None:
            body["firmware_version"] = firmware_version
        response = await client.post("/api/v1/devices", json=body, headers=headers)
        response.raise_for_status()
        registered = response.json()
        devices.append(SimulatedDevice(registered["id"], registered["token"], serial))
    return devices


class FailurePlan:
    """Decide which updates fail so that exactly `share` of them do, spread evenly.

    Error diffusion rather than chance: a test of thresholds must not depend on luck, and the
    first failure comes early (the count starts half-way), as it does in a bad release.
    """

    def __init__(self, share: float) -> None:
        self.share = share
        self._carry = 0.5
        self.failures = 0

    def next_fails(self) -> bool:
        """Tell whether the next update fails."""
        self._carry += self.share
        if self._carry >= 1:
            self._carry -= 1
            self.failures += 1
            return True
        return False


@dataclass
class DeviceState:
    """What a simulated device knows about itself."""

    device: SimulatedDevice
    firmware_version: str
    battery_percent: float = 100.0
    uptime_seconds: int = 0
    silent: bool = False


@dataclass
class UpdateStats:
    """How the fleet's updates went."""

    offered: int = 0
    succeeded: int = 0
    failed: int = 0
    rolled_back: int = 0
    corrupt: int = 0


async def heartbeat(client: httpx.AsyncClient, state: DeviceState) -> httpx.Response:
    """Send the device's heartbeat (nothing if it has gone silent)."""
    return await client.post(
        f"/api/v1/devices/{state.device.id}/heartbeat",
        json={
            "battery_percent": round(state.battery_percent, 1),
            "signal_strength_dbm": -60,
            "firmware_version": state.firmware_version,
            "uptime_seconds": state.uptime_seconds,
        },
        headers={"Authorization": f"Bearer {state.device.token}"},
    )


async def update_once(
    client: httpx.AsyncClient, state: DeviceState, plan: FailurePlan, stats: UpdateStats
) -> bool:
    """Check for an update and apply it as a device would; tell whether one was offered.

    A failing update alternates between reporting failure and restarting on the old version
    (which the server must recognise as a rollback).
    """
    headers = {"Authorization": f"Bearer {state.device.token}"}
    base = f"/api/v1/devices/{state.device.id}/firmware"
    response = await client.get(f"{base}/update", headers=headers)
    if response.status_code == 204:
        return False
    response.raise_for_status()
    offer = response.json()
    stats.offered += 1

    async def report(status: str, reason: str | None = None) -> None:
        sent = await client.post(
            f"{base}/progress",
            json={"status": status, "reason": reason, "campaign_id": offer["campaign_id"]},
            headers=headers,
        )
        sent.raise_for_status()

    await report("downloading")
    image = await client.get(offer["download_url"], headers=headers)
    image.raise_for_status()
    if hashlib.sha256(image.content).hexdigest() != offer["sha256"]:
        stats.corrupt += 1
        await report("failed", "the image does not match its digest")
        return True
    await report("installing")
    if plan.next_fails():
        if plan.failures % 2:
            stats.failed += 1
            await report("failed", "simulated installation failure")
        else:
            stats.rolled_back += 1
            state.uptime_seconds = 0
            (await heartbeat(client, state)).raise_for_status()
        return True
    state.firmware_version = offer["version"]
    state.uptime_seconds = 0
    stats.succeeded += 1
    await report("succeeded")
    return True


async def fleet_tick(
    client: httpx.AsyncClient,
    fleet: list[DeviceState],
    *,
    plan: FailurePlan,
    stats: UpdateStats,
    heartbeats: bool = True,
    updates: bool = True,
    elapsed_seconds: int = 60,
    concurrency: int = 32,
) -> None:
    """Advance every device that is not silent by one reporting interval, side by side.

    At most `concurrency` devices talk at once: one client standing in for a whole fleet would
    otherwise open more connections (to the server, and through it to its cache) than any
    deployment allows a single source.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(state: DeviceState) -> None:
        if state.silent:
            return
        state.uptime_seconds += elapsed_seconds
        state.battery_percent = max(0.0, state.battery_percent - 0.05)
        async with gate:
            if heartbeats:
                (await heartbeat(client, state)).raise_for_status()
            if updates:
                await update_once(client, state, plan, stats)

    await asyncio.gather(*(one(state) for state in fleet))


async def operate(
    client: httpx.AsyncClient,
    fleet: list[DeviceState],
    *,
    interval_seconds: float,
    seconds: float | None,
    silent_share: float = 0.0,
    failure_share: float = 0.0,
    seed: int | None = None,
) -> UpdateStats:
    """Heartbeat and take updates every interval until `seconds` pass (None: forever).

    `silent_share` of the devices stop reporting after the first interval; `failure_share` of
    the updates fail.
    """
    rng = random.Random(seed)  # noqa: S311  (simulation)
    plan, stats = FailurePlan(failure_share), UpdateStats()
    started = time.monotonic()
    first = True
    while seconds is None or time.monotonic() - started < seconds:
        await fleet_tick(
            client, fleet, plan=plan, stats=stats, elapsed_seconds=int(interval_seconds)
        )
        if first:
            for state in fleet:
                state.silent = rng.random() < silent_share
            first = False
        await asyncio.sleep(interval_seconds)
    return stats


async def stream(
    client: httpx.AsyncClient,
    devices: list[SimulatedDevice],
    *,
    rate: float,
    seconds: float | None,
    abnormal_probability: float = 0.02,
    first_episode_after: float | None = None,
    seed: int | None = None,
    on_tick: Callable[[FleetStats], None] | None = None,
) -> FleetStats:
    """Send `rate` readings per second from every device until `seconds` pass (None: forever)."""
    stats = FleetStats()
    started = time.monotonic()
    interval = 1.0 / rate

    async def run(index: int, device: SimulatedDevice) -> None:
        rng = random.Random(None if seed is None else seed + index)  # noqa: S311  (simulation)
        vitals = Vitals.baseline(rng)
        headers = {"Authorization": f"Bearer {device.token}"}
        forced = first_episode_after is not None and index == 0
        next_at = time.monotonic() + rng.uniform(0, interval)
        while seconds is None or time.monotonic() - started < seconds:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            if forced and time.monotonic() - started >= (first_episode_after or 0):
                vitals.start_episode()
                forced = False
            payload = {
                "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                "measurements": vitals.step(abnormal_probability),
            }
            stats.sent += 1
            try:
                response = await client.post(
                    f"/api/v1/devices/{device.id}/data", json=payload, headers=headers
                )
                stats.statuses[response.status_code] = (
                    stats.statuses.get(response.status_code, 0) + 1
                )
                if response.status_code in (200, 201, 202):
                    stats.accepted += 1
                else:
                    stats.failed += 1
            except httpx.HTTPError:
                stats.failed += 1
            if on_tick is not None:
                on_tick(stats)

    await asyncio.gather(*(run(i, d) for i, d in enumerate(devices)))
    return stats
