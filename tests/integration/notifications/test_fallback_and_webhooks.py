"""Channels in use: an alarm falls back from a failing email server to SMS, the SMS provider's
signed delivery report is recorded, and the organisation's webhook receives each alarm change
signed so that the snippet in docs/webhooks.md verifies it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import SecretStr

from medcloud.config import Settings
from medcloud.notifications.mailbox import LocalMailbox
from tests.integration.notifications.conftest import (
    escalation,
    notification_settings,
    roster,
    user_id,
)
from tests.support.cast import build_cast
from tests.support.client import eventually, reading, running
from tests.support.receivers import Answer, Request, receivers

DOCS = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
SID = "AC" + "1" * 32
TOKEN = "sms-provider-token"


def documented_verify() -> Callable[..., bool]:
    """The `verify` function exactly as docs/webhooks.md publishes it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    verify: Callable[..., bool] = namespace["verify"]
    return verify


async def provider(request: Request) -> Answer:
    """A Twilio-like SMS API that queues every message it is given."""
    number = len(request.body)
    document = {"sid": f"SM{number:032d}", "status": "queued"}
    return 201, {"Content-Type": "application/json"}, json.dumps(document).encode()


async def test_a_failing_email_server_falls_back_to_sms_and_the_report_is_recorded(
    settings: Settings, mailbox: LocalMailbox
) -> None:
    async with receivers() as start:
        sms = await start(provider)
        config = notification_settings(
            settings,
            mailbox,
            sms_base_url=sms.url + "/2010-04-01",
            sms_account_sid=SID,
            sms_auth_token=SecretStr(TOKEN),
            sms_from="+15005550006",
        )
        async with running(config) as api:
            cast = await build_cast(api)
            await roster(api, cast)
            nina = user_id(cast, "nina_nurse")
            response = await api.http.put(
                f"/api/v1/notifications/recipients/{nina}",
                json={
                    "email": "nina.pager@stmary.example",
                    "phone": "+447700900123",
                    "channels": {"high": ["email", "sms"]},
                },
                headers=cast.auth("nina_nurse"),
            )
            assert response.status_code == 200, response.text
            mailbox.refuse_with = "451 4.3.0 try again later"

            assert (
                await api.send(cast.devices["peters_oximeter"], reading(heart_rate=160))
            ).status_code == 201
            alarms = await eventually(lambda: api.alerts(cast.tokens["nina_nurse"], state="active"))
            alert_id = alarms[0]["id"]

            async def texted() -> bool:
                return bool(sms.requests)

            assert await eventually(texted), "no SMS after the email failed"
            form = parse_qs(sms.requests[0].body.decode())
            assert form["To"] == ["+447700900123"]
            text = form["Body"][0]
            assert len(text) <= 160
            assert cast.patients["peter"]["family_name"] not in text
            assert sms.requests[0].header("Idempotency-Key")

            async def sent() -> dict[str, Any] | None:
                record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
                sms_rows = [d for d in record["deliveries"] if d["channel"] == "sms"]
                return sms_rows[0] if sms_rows and sms_rows[0]["status"] == "sent" else None

            delivery = await eventually(sent)
            assert delivery is not None, "the SMS was not recorded as sent"
            record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
            email = [d for d in record["deliveries"] if d["channel"] == "email"][0]
            assert email["status"] == "failed" and email["attempts"] == 2

            # The provider's delivery report, signed as Twilio signs it.
            callback = "http://medcloud.test/api/v1/notifications/sms/status"
            report = {"MessageSid": delivery["provider_id"], "MessageStatus": "delivered"}
            signed = callback + "".join(k + report[k] for k in sorted(report))
            signature = base64.b64encode(
                hmac.new(TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
            ).decode()
            forged = await api.http.post(
                "/api/v1/notifications/sms/status",
                data=report,
                headers={"X-Twilio-Signature": "bm90IGl0"},
            )
            assert forged.status_code == 403
            ok = await api.http.post(
                "/api/v1/notifications/sms/status",
                data=report,
                headers={"X-Twilio-Signature": signature},
            )
            assert ok.status_code == 204, ok.text
            record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
            sms_row = [d for d in record["deliveries"] if d["channel"] == "sms"][0]
            assert sms_row["status"] == "delivered" and sms_row["delivered_at"] is not None


async def test_the_webhook_receives_each_change_signed_as_documented(
    settings: Settings, mailbox: LocalMailbox
) -> None:
    verify = documented_verify()
    secrets: list[str] = []

    async def receiver(request: Request) -> Answer:
        if not secrets or not verify(secrets[0], request.body, request.headers):
            return 401, {}, b""
        return 200, {}, b""

    async with receivers() as start:
        hook = await start(receiver)
        async with running(notification_settings(settings, mailbox)) as api:
            cast = await build_cast(api)
            await roster(api, cast)
            created = await api.http.post(
                "/api/v1/webhooks",
                json={"url": hook.url + "/medcloud", "description": "EHR bridge"},
                headers=cast.auth("alice_admin"),
            )
            assert created.status_code == 201, created.text
            secrets.append(created.json()["secret"])
            for refused in ("http://169.254.169.254/latest/meta-data", "http://[fe80::1]/x"):
                answer = await api.http.post(
                    "/api/v1/webhooks", json={"url": refused}, headers=cast.auth("alice_admin")
                )
                assert answer.status_code == 422, answer.text
                assert answer.json()["errors"][0]["field"].endswith("url")
            listed = await api.http.get("/api/v1/webhooks", headers=cast.auth("alice_admin"))
            assert "secret" not in listed.json()["items"][0]

            await api.send(cast.devices["peters_oximeter"], reading(heart_rate=160))
            alarms = await eventually(lambda: api.alerts(cast.tokens["nina_nurse"], state="active"))
            alert_id = alarms[0]["id"]
            acknowledged = await api.http.post(
                f"/api/v1/alerts/{alert_id}/acknowledge", headers=cast.auth("nina_nurse")
            )
            assert acknowledged.status_code == 200

            async def both() -> list[str]:
                kinds = [orjson.loads(r.body)["type"] for r in hook.requests]
                return kinds if "alert.acknowledged" in kinds else []

            kinds = await eventually(both)
            # Two senders may post them in either order (docs/webhooks.md); the alarm's state
            # in each body is what a receiver orders them by.
            assert sorted(kinds[:2]) == ["alert.acknowledged", "alert.raised"]
            bodies = {orjson.loads(r.body)["type"]: r.body for r in hook.requests}
            raised = orjson.loads(bodies["alert.raised"])
            assert raised["alert"]["alert_id"] == alert_id
            assert raised["alert"]["state"] == "active"
            assert orjson.loads(bodies["alert.acknowledged"])["alert"]["state"] == "acknowledged"
            assert cast.patients["peter"]["family_name"].encode() not in bodies["alert.raised"]
            ids = [r.header("Medcloud-Webhook-Id") for r in hook.requests]
            assert len(set(ids)) == len(ids)

            async def delivered() -> bool:
                record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
                hooks = [d for d in record["deliveries"] if d["channel"] == "webhook"]
                return len(hooks) == 2 and all(d["status"] == "delivered" for d in hooks)

            assert await eventually(delivered), "the receiver did not accept both"
