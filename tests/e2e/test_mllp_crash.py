"""HL7 over MLLP across a server killed with SIGKILL: every message answered AA is stored,
none twice; what got no answer is resent, as a gateway does, and stored once too."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from collections import Counter
from pathlib import Path

import httpx

from medcloud.config import Settings
from tests.integration.interop.conftest import oru
from tests.support.mllp import connected, listening, segments
from tests.support.processes import free_port, medcloud, settings_env

ADMIN = ("alice.admin@stmary.example", "alice-admin-passphrase")
MONITORS = [f"0080AAFFFE0C{n:04X}" for n in range(4)]
MESSAGES = 400
VITALS = 5  # per message: SpO2, pulse, systolic, diastolic, temperature


def message(n: int, start: dt.datetime) -> str:
    """Message n: one monitor's vitals, each monitor's a second after its last."""
    monitor = MONITORS[n % len(MONITORS)]
    at = start + dt.timedelta(seconds=n // len(MONITORS))
    return oru(f"CRASH-{n}", at=at, mrn=f"MRN-{monitor}", equipment=monitor)


async def stream(port: int, numbers: list[int], start: dt.datetime, answered: set[int]) -> None:
    """Send the messages in turn over one connection, noting those answered AA, until the
    connection breaks."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, OSError):
        async with connected(port) as gateway:
            for n in numbers:
                ack = segments(await gateway.send(message(n, start), timeout=15))
                if ack["MSA"][1] == "AA":
                    answered.add(n)


async def accepted_at_all(port: int, start: dt.datetime) -> None:
    """Wait until the listener takes messages (its local interface is made on first start)."""
    for _ in range(200):
        async with connected(port) as gateway:
            if segments(await gateway.send(message(0, start)))["MSA"][1] == "AA":
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the listener never accepted a message")


async def stored(base: str) -> Counter[tuple[str, dt.datetime]]:
    """Count the stored readings of every monitor by (serial, timestamp)."""
    found: Counter[tuple[str, dt.datetime]] = Counter()
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        signed_in = await http.post(
            "/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}
        )
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        devices = (await http.get("/api/v1/devices", headers=headers)).json()["items"]
        for device in (d for d in devices if d["serial_number"] in MONITORS):
            cursor = None
            while True:
                params = {"limit": "1000"} | ({"cursor": cursor} if cursor else {})
                page = (
                    await http.get(
                        f"/api/v1/devices/{device['id']}/data", headers=headers, params=params
                    )
                ).json()
                for row in page["items"]:
                    taken = dt.datetime.fromisoformat(row["timestamp"])
                    found[(device["serial_number"], taken)] += 1
                cursor = page.get("next_cursor")
                if not cursor:
                    break
    return found


async def test_every_message_answered_aa_survives_a_kill_and_none_is_stored_twice(
    settings: Settings, tmp_path: Path
) -> None:
    mllp, http = free_port(), free_port()
    env = settings_env(
        settings,
        MEDCLOUD_MLLP__PORT=str(mllp),
        MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL=ADMIN[0],
        MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD=ADMIN[1],
        MEDCLOUD_IDENTITY__ARGON2_TIME_COST="1",
        MEDCLOUD_IDENTITY__ARGON2_MEMORY_KIB="1024",
    )
    log = tmp_path / "serve.log"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=30)
    answered: set[int] = set()
    lanes = [list(range(lane, MESSAGES, 4)) for lane in range(4)]

    with medcloud("serve", "--port", str(http), env=env, log=log) as server:
        await listening(mllp, timeout=60)
        await accepted_at_all(mllp, start)
        answered.add(0)
        senders = [asyncio.create_task(stream(mllp, lane, start, answered)) for lane in lanes]
        while len(answered) < MESSAGES // 4:
            await asyncio.sleep(0.01)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        await asyncio.gather(*senders)
    assert MESSAGES // 4 <= len(answered) < MESSAGES, "the kill came after every message"

    with medcloud("serve", "--port", str(http), env=env, log=log):
        await listening(mllp, timeout=60)
        base = f"http://127.0.0.1:{http}"
        after_kill = await stored(base)
        # Every AA'd message is there whole; nothing is there twice.
        for n in answered:
            taken = start + dt.timedelta(seconds=n // len(MONITORS))
            assert after_kill[(MONITORS[n % len(MONITORS)], taken)] == VITALS, n
        assert set(after_kill.values()) == {VITALS}

        # The gateway resends what got no answer: each is stored once.
        resend = sorted(set(range(MESSAGES)) - answered)
        await stream(mllp, resend, start, answered)
        assert answered == set(range(MESSAGES))
        final = await stored(base)
    assert len(final) == MESSAGES
    assert set(final.values()) == {VITALS}
