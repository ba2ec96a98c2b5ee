"""Signing in cannot be turned against users, over HTTP on both backends: an attacker's failures
make only the attacker's address wait, the waits grow, every refusal answers alike, locks and
unlocks are audited, and a ward behind one NAT is not throttled by its own typos.

The server's clock is frozen, so a wait lasts until a test moves it on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.platform.clock import FrozenClock
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.cast import PASSWORD, invite
from tests.support.client import Api, bearer, eventually, running

ALICES_DESK = "10.1.0.5"
WARD = "10.20.0.1"
"""The Cardiology ward's one public address (a NAT)."""
MALLORY = "203.0.113.66"
STRANGER = "192.0.2.200"


def botnet(n: int) -> str:
    return f"198.51.100.{n}"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
async def api(settings: Settings, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running(settings, runtime=bootstrap(settings, clock=clock)) as client:
        yield client


@asynccontextmanager
async def from_address(api: Api, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from `address` (the ASGI scope's `client`)."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://medcloud.test") as client:
        yield client


async def sign_in(
    api: Api, address: str, email: str, password: str, **extra: str
) -> httpx.Response:
    async with from_address(api, address) as client:
        return await client.post(
            "/api/v1/auth/token",
            data={"username": email, "password": password, **extra},
            headers={"X-Request-Id": "one-request-id"},
        )


async def put_alices_account_in_its_wait(api: Api, settings: Settings) -> None:
    """A botnet: one wrong guess from each of as many addresses as the ceiling."""
    for n in range(settings.identity.account_failures_before_wait):
        refused = await sign_in(api, botnet(n), ADMIN_EMAIL, f"guess-{n}")
        assert refused.status_code == 401


async def audit(api: Api, token: str, action: str, count: int) -> list[dict[str, Any]]:
    async def entries() -> list[dict[str, Any]]:
        page = await api.http.get("/api/v1/audit", params={"action": action}, headers=bearer(token))
        assert page.status_code == 200, page.text
        items: list[dict[str, Any]] = page.json()["items"]
        return items if len(items) >= count else []

    return await eventually(entries)


async def test_five_wrong_passwords_from_one_address_do_not_stop_alice_signing_in_from_another(
    api: Api, settings: Settings
) -> None:
    free = settings.identity.failures_before_wait
    for n in range(free):
        assert (await sign_in(api, MALLORY, ADMIN_EMAIL, f"guess-{n}")).status_code == 401
    waiting = await sign_in(api, MALLORY, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert waiting.status_code == 429
    assert waiting.headers["retry-after"] == "1"

    signed_in = await sign_in(api, ALICES_DESK, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert signed_in.status_code == 200, signed_in.text


async def test_an_address_waits_twice_as_long_after_each_further_failure(
    api: Api, settings: Settings, clock: FrozenClock
) -> None:
    for n in range(settings.identity.failures_before_wait - 1):
        assert (await sign_in(api, MALLORY, ADMIN_EMAIL, f"guess-{n}")).status_code == 401
    waits = []
    for n in range(6):
        assert (await sign_in(api, MALLORY, ADMIN_EMAIL, f"more-{n}")).status_code == 401
        early = await sign_in(api, MALLORY, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert early.status_code == 429
        waits.append(int(early.headers["retry-after"]))
        clock.advance(seconds=waits[-1])
    assert waits == [1, 2, 4, 8, 16, 32]
    # Mallory's waiting never touched alice's own address.
    assert (await sign_in(api, ALICES_DESK, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_a_waiting_account_an_unknown_email_a_wrong_password_and_a_missing_code_answer_alike(
    api: Api, alice: str, settings: Settings
) -> None:
    await invite(api, alice, "ed.nurse@stmary.example", "nurse", [])
    await invite(api, alice, "fay.clinician@stmary.example", "clinician", [])
    enrolled = await api.http.post(
        "/api/v1/auth/mfa/enrol",
        data={"username": "fay.clinician@stmary.example", "password": PASSWORD},
    )
    assert enrolled.status_code == 200
    await put_alices_account_in_its_wait(api, settings)

    cases = {
        "waiting, with the right password": (ADMIN_EMAIL, ADMIN_PASSWORD, {}),
        "unknown email": ("nobody@stmary.example", ADMIN_PASSWORD, {}),
        "wrong password": ("ed.nurse@stmary.example", "not-" + PASSWORD, {}),
        "right password, no code": ("fay.clinician@stmary.example", PASSWORD, {}),
        "right password, wrong code": (
            "fay.clinician@stmary.example",
            PASSWORD,
            {"totp": "000000"},
        ),
    }
    answers = {}
    # Each from an address of its own, so per-address headers (rate limits) start alike too.
    for n, (name, (email, password, extra)) in enumerate(cases.items()):
        response = await sign_in(api, f"192.0.2.{n}", email, password, **extra)
        answers[name] = (response.status_code, response.headers.multi_items(), response.content)
    expected = answers["wrong password"]
    assert expected[0] == 401
    assert "retry-after" not in dict(expected[1])
    assert answers == dict.fromkeys(cases, expected)


async def test_locks_and_an_admins_unlock_are_audited_and_the_unlock_lifts_every_wait(
    api: Api, alice: str, settings: Settings
) -> None:
    me = (await api.http.get("/api/v1/users/me", headers=bearer(alice))).json()
    free = settings.identity.failures_before_wait
    for n in range(free):
        await sign_in(api, MALLORY, ADMIN_EMAIL, f"guess-{n}")
    for n in range(settings.identity.account_failures_before_wait - free):
        await sign_in(api, botnet(n), ADMIN_EMAIL, f"guess-{n}")
    assert (await sign_in(api, MALLORY, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 429
    assert (await sign_in(api, STRANGER, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 401

    unlocked = await api.http.post(f"/api/v1/users/{me['id']}/unlock", headers=bearer(alice))
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["id"] == me["id"]

    for address in (MALLORY, STRANGER):
        assert (await sign_in(api, address, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
    locks = await audit(api, alice, "auth.lock", 2)
    assert sorted((e["detail"]["scope"], e["object_id"]) for e in locks) == [
        ("account", me["id"]),
        ("address", me["id"]),
    ]
    address_lock = next(e for e in locks if e["detail"]["scope"] == "address")
    assert (address_lock["source_ip"], address_lock["detail"]["wait_seconds"]) == (MALLORY, 1)
    (unlock,) = await audit(api, alice, "auth.unlock", 1)
    assert (unlock["actor_id"], unlock["object_id"]) == (me["id"], me["id"])
    assert unlock["detail"] == {
        "failed_logins": settings.identity.account_failures_before_wait,
        "account_waiting": True,
    }


async def test_only_an_admin_of_the_organisation_may_unlock(api: Api, alice: str) -> None:
    nurse = await invite(api, alice, "ed.nurse@stmary.example", "nurse", [])
    me = (await api.http.get("/api/v1/users/me", headers=bearer(alice))).json()
    refused = await api.http.post(f"/api/v1/users/{me['id']}/unlock", headers=bearer(nurse))
    assert refused.status_code == 403
    unknown = await api.http.post("/api/v1/users/no-such-user/unlock", headers=bearer(alice))
    assert unknown.status_code == 404


async def test_thirty_nurses_behind_one_address_sign_in_despite_their_typos(
    api: Api, alice: str
) -> None:
    ward = [f"nurse{n:02d}@stmary.example" for n in range(30)]
    for email in ward:
        await invite(api, alice, email, "nurse", [])
    statuses = []
    # A shift change: everyone signs in through the ward's one address, two typos first each.
    for email in ward:
        for password in ("typo-" + PASSWORD, PASSWORD[:-1], PASSWORD):
            statuses.append((await sign_in(api, WARD, email, password)).status_code)
    assert statuses == [401, 401, 200] * 30
