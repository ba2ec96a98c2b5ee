"""What the notification tests share: a real SMTP mailbox, a deployment that mails it, and the
cast's on-call roster (Cardiology: nina primary, carol charge; alice the physician on call)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest

from medcloud.config import NotificationSettings, Settings
from medcloud.notifications.mailbox import LocalMailbox, Received
from tests.support.cast import Cast
from tests.support.client import Api, bearer, now, running


@pytest.fixture
async def mailbox() -> AsyncIterator[LocalMailbox]:
    box = LocalMailbox()
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


def notification_settings(settings: Settings, mailbox: LocalMailbox, **changes: Any) -> Settings:
    """The test deployment, mailing `mailbox`, with retries and circuits sized for a test."""
    config = NotificationSettings(
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        poll_seconds=0.1,
        stream_poll_seconds=0.1,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        max_attempts=2,
        breaker_failures=3,
        breaker_reset_seconds=0.5,
        public_url="http://medcloud.test",
        webhook_allow_loopback=True,
    ).model_copy(update=changes)
    return settings.model_copy(update={"notifications": config})


@pytest.fixture
async def api(settings: Settings, mailbox: LocalMailbox) -> AsyncIterator[Api]:
    async with running(notification_settings(settings, mailbox)) as client:
        yield client


EMAILS = {
    "alice_admin": "alice.pager@stmary.example",
    "carol_clinician": "carol.pager@stmary.example",
    "nina_nurse": "nina.pager@stmary.example",
    "bob_other_ward": "bob.pager@stmary.example",
}


def user_id(cast: Cast, name: str) -> str:
    """The id of a member of the cast (alice signs in with the bootstrap admin's address)."""
    return cast.user_ids["alice.admin" if name == "alice_admin" else name]


async def roster(api: Api, cast: Cast, *, policy: list[tuple[int, str]] | None = None) -> None:
    """Give the cast email addresses and put Cardiology's staff on call for the next hour."""
    alice = cast.auth("alice_admin")
    for name, address in EMAILS.items():
        response = await api.http.put(
            f"/api/v1/notifications/recipients/{user_id(cast, name)}",
            json={"email": address, "channels": {"high": ["email"], "medium": ["email"]}},
            headers=alice,
        )
        assert response.status_code == 200, response.text
    start = now() - dt.timedelta(minutes=5)
    for name, duty, ward in (
        ("nina_nurse", "primary", cast.wards["cardiology"]),
        ("carol_clinician", "charge", cast.wards["cardiology"]),
        ("alice_admin", "physician", None),
        ("bob_other_ward", "primary", cast.wards["oncology"]),
    ):
        response = await api.http.post(
            "/api/v1/on-call",
            json={
                "user_id": user_id(cast, name),
                "ward_id": ward,
                "duty": duty,
                "starts_at": start.isoformat(),
                "ends_at": (start + dt.timedelta(hours=1)).isoformat(),
            },
            headers=alice,
        )
        assert response.status_code == 201, response.text
    if policy is not None:
        response = await api.http.put(
            "/api/v1/escalation-policies",
            json={
                "ward_id": cast.wards["cardiology"],
                "priority": "high",
                "steps": [{"after_seconds": s, "notify": who} for s, who in policy],
            },
            headers=alice,
        )
        assert response.status_code == 200, response.text


def parsed(received: Received) -> EmailMessage:
    message = email.message_from_bytes(received.raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(received: Received) -> str:
    part = parsed(received).get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def to_whom(mailbox: LocalMailbox) -> list[str]:
    return [address for received in mailbox.messages for address in received.to]


async def escalation(api: Api, token: str, alert_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/api/v1/alerts/{alert_id}/notifications", headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
