"""A fleet of simulated bedside devices that stream realistic vitals to any medcloud deployment."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


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
    client: httpx.AsyncClient, token: str, count: int, *, prefix: str | None = None
) -> list[SimulatedDevice]:
    """Register `count` simulated monitors (serials are unique per run unless `prefix` is given)."""
    prefix = prefix or f"SIM-{int(time.time())}"
    devices = []
    headers = {"Authorization": f"Bearer {token}"}
    for index in range(count):
        serial = f"{prefix}-{index + 1:03d}"
        patient = await client.post(
            "/api/v1/patients",
            json={
                "identifier_system": "urn:medcloud:simulator",
                "identifier_value": serial,
                "family_name": "Simulated",
                "given_name": f"Patient {index + 1}",
                "birth_date": "1950-01-01",
            },
            headers=headers,
        )
        patient.raise_for_status()
        response = await client.post(
            "/api/v1/devices",
            json={
                "serial_number": serial,
                "model": "BedsideMonitor 3",
                "manufacturer": "medcloud simulator",
                "patient_id": patient.json()["id"],
            },
            headers=headers,
        )
        response.raise_for_status()
        body = response.json()
        devices.append(SimulatedDevice(body["id"], body["token"], serial))
    return devices


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
