"""A report made is mailed to the people it is for: the ward's team, the organisation's admins."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from medcloud.config import Settings
from medcloud.notifications.mailbox import LocalMailbox
from tests.integration.analytics.helpers import runtime
from tests.integration.notifications import conftest as notifications
from tests.integration.notifications.conftest import (
    EMAILS,
    notification_settings,
    text_of,
    to_whom,
    user_id,
)
from tests.integration.reports.test_daily import backfill, daily, past_assignment
from tests.support.cast import Cast
from tests.support.client import Api, now, running

mailbox = notifications.mailbox  # the fixture: a real SMTP server the deployment mails


@pytest.fixture
async def api(settings: Settings, mailbox: LocalMailbox) -> AsyncIterator[Api]:
    async with running(notification_settings(settings, mailbox)) as client:
        yield client


async def test_the_daily_reports_are_mailed_to_the_admins_and_the_wards_team(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    for name, address in EMAILS.items():
        response = await api.http.put(
            f"/api/v1/notifications/recipients/{user_id(cast, name)}",
            json={"email": address, "channels": {"high": ["email"]}},
            headers=cast.auth("alice_admin"),
        )
        assert response.status_code == 200, response.text
    day = now().date() - dt.timedelta(days=2)
    await past_assignment(api, cast, dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    await backfill(api, cast, day)
    assert (await daily(runtime(api), day=day)).made == 2
    await mailbox.wait_for(3, timeout=20)
    assert sorted(to_whom(mailbox)) == sorted(
        EMAILS[name] for name in ("alice_admin", "carol_clinician", "nina_nurse")
    )
    for received in mailbox.messages:
        text = text_of(received)
        assert "http://medcloud.test/api/v1/reports/" in text
        assert cast.patients["peter"]["family_name"] not in text
