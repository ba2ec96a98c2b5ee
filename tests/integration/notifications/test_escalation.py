"""An alarm reaches a person: first step at once, escalation through the roster until someone
acknowledges, retries and fallback, the technical alarm when a channel stays down or nobody is
on call, and a record of every delivery — over a real SMTP server."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from medcloud.notifications.mailbox import LocalMailbox
from tests.integration.analytics.helpers import published
from tests.integration.notifications.conftest import (
    EMAILS,
    escalation,
    parsed,
    roster,
    text_of,
    to_whom,
    user_id,
)
from tests.support.cast import Cast
from tests.support.client import Api, eventually, reading


async def peters_alarm(api: Api, cast: Cast) -> str:
    """Raise a high-priority alarm for Peter (Cardiology); return its id."""
    response = await api.send(cast.devices["peters_oximeter"], reading(heart_rate=160))
    assert response.status_code == 201, response.text

    async def raised() -> list[dict[str, Any]]:
        return await api.alerts(cast.tokens["carol_clinician"], state="active", source="clinical")

    alarms = await eventually(raised)
    assert alarms, "no alarm raised in time"
    alert_id = str(alarms[0]["id"])

    # The notifications context takes the alarm from the bus a moment later; until then its
    # record of the alarm is rightly 404.
    async def known() -> bool:
        response = await api.http.get(
            f"/api/v1/alerts/{alert_id}/notifications", headers=cast.auth("alice_admin")
        )
        return response.status_code == 200

    assert await eventually(known), "the notifications context never took the alarm"
    return alert_id


async def test_an_alarm_reaches_the_primary_nurse_by_email_and_inbox(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    await roster(api, cast)
    alert_id = await peters_alarm(api, cast)

    await mailbox.wait_for(1, timeout=15)
    assert to_whom(mailbox) == [EMAILS["nina_nurse"]]
    message = parsed(mailbox.messages[0])
    body = text_of(mailbox.messages[0])
    # Only priority, ward and a link: nothing that names Peter or his values. The link carries
    # random ids and a signed token that may happen to spell "160", so the value is looked for
    # as a number in the words around it.
    peter = cast.patients["peter"]
    subject = str(message["Subject"])
    for private in (peter["family_name"], peter["given_name"], peter["identifier_value"]):
        assert private not in subject
        assert private not in body
    words = re.sub(r"https?://\S+", " ", f"{subject}\n{body}")
    assert not re.search(r"(?<![\w.])160(?![\w.])", words)
    assert "HIGH" in str(message["Subject"]).upper()
    assert f"/api/v1/alerts/{alert_id}" in body

    inbox = await api.http.get("/api/v1/notifications/inbox", headers=cast.auth("nina_nurse"))
    assert inbox.status_code == 200, inbox.text
    assert [item["alert_id"] for item in inbox.json()["items"]] == [alert_id]
    assert inbox.json()["unread"] == 1
    item = inbox.json()["items"][0]["id"]
    read = await api.http.post(
        f"/api/v1/notifications/inbox/{item}/read", headers=cast.auth("nina_nurse")
    )
    assert read.status_code == 200 and read.json()["read_at"] is not None
    # Another user's inbox item is nobody else's business.
    other = await api.http.post(
        f"/api/v1/notifications/inbox/{item}/read", headers=cast.auth("carol_clinician")
    )
    assert other.status_code == 404

    async def sent() -> dict[str, Any] | None:
        record = await escalation(api, cast.tokens["carol_clinician"], alert_id)
        statuses = {(d["channel"], d["status"]) for d in record["deliveries"]}
        return record if ("email", "sent") in statuses else None

    record = await eventually(sent)
    assert record is not None, "not in time"
    assert record["state"] == "escalating" and record["step"] == 1
    assert {(d["channel"], d["status"], d["target"]) for d in record["deliveries"]} == {
        ("inapp", "delivered", "primary"),
        ("email", "sent", "primary"),
    }
    # Bob (another ward) may not see who was told about Peter.
    hidden = await api.http.get(
        f"/api/v1/alerts/{alert_id}/notifications", headers=cast.auth("bob_other_ward")
    )
    assert hidden.status_code == 404


async def test_escalation_runs_through_three_steps_until_acknowledged(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    await roster(api, cast, policy=[(0, "primary"), (1, "charge"), (2, "physician")])
    alert_id = await peters_alarm(api, cast)

    await mailbox.wait_for(3, timeout=20)
    assert to_whom(mailbox) == [
        EMAILS["nina_nurse"],
        EMAILS["carol_clinician"],
        EMAILS["alice_admin"],
    ]
    steps = [
        (e["step"], e["target"])
        for e in await published(api, "alert.escalated")
        if e["alert_id"] == alert_id
    ]
    assert steps == [(0, "primary"), (1, "charge"), (2, "physician")]
    record = await escalation(api, cast.tokens["alice_admin"], alert_id)
    assert record["state"] == "exhausted"

    response = await api.http.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers=cast.auth("alice_admin")
    )
    assert response.status_code == 200, response.text

    # Those already paged (not alice herself) hear that someone has it in hand.
    await mailbox.wait_for(5, timeout=15)
    told = sorted(to_whom(mailbox)[3:])
    assert told == sorted([EMAILS["nina_nurse"], EMAILS["carol_clinician"]])
    assert all("acknowledged" in m.subject.lower() for m in mailbox.messages[3:])

    async def stopped() -> bool:
        record = await escalation(api, cast.tokens["alice_admin"], alert_id)
        return bool(record["state"] == "acknowledged")

    assert await eventually(stopped), "not in time"


async def test_acknowledging_stops_the_escalation_at_once(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    await roster(api, cast, policy=[(0, "primary"), (3, "charge"), (6, "physician")])
    alert_id = await peters_alarm(api, cast)
    await mailbox.wait_for(1, timeout=15)

    response = await api.http.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers=cast.auth("nina_nurse")
    )
    assert response.status_code == 200, response.text

    async def stopped() -> dict[str, Any] | None:
        record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
        return record if record["state"] == "acknowledged" else None

    record = await eventually(stopped)
    assert record is not None, "not in time"
    assert record["next_at"] is None
    assert record["stopped_by"] == user_id(cast, "nina_nurse")
    # Nobody beyond the first step was ever queued, and no later step will be.
    assert {d["step"] for d in record["deliveries"]} == {0}
    assert to_whom(mailbox) == [EMAILS["nina_nurse"]]


async def test_the_link_in_the_email_acknowledges_once(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    await roster(api, cast, policy=[(0, "primary"), (30, "charge")])
    alert_id = await peters_alarm(api, cast)
    await mailbox.wait_for(1, timeout=15)
    found = re.search(
        r"https?://\S+/api/v1/notifications/acknowledge\?token=[\w.\-]+",
        text_of(mailbox.messages[0]),
    )
    assert found, text_of(mailbox.messages[0])
    url = urlsplit(found.group(0))
    token = parse_qs(url.query)["token"][0]

    # Opening the link only asks (a mail scanner following links acknowledges nothing).
    page = await api.http.get(f"{url.path}?{url.query}")
    assert page.status_code == 200 and "<form" in page.text
    record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
    assert record["state"] == "escalating"

    tampered = await api.http.post(url.path, params={"token": token[:-4] + "AAAA"})
    assert tampered.status_code == 403
    assert tampered.headers["content-type"].startswith("application/problem+json")

    done = await api.http.post(url.path, params={"token": token})
    assert done.status_code == 200, done.text
    assert done.json() == {"alert_id": alert_id, "acknowledged": True}
    again = await api.http.post(url.path, params={"token": token})
    assert again.status_code == 409

    async def acknowledged() -> dict[str, Any] | None:
        alarm = await api.http.get(
            f"/api/v1/alerts/{alert_id}", headers=cast.auth("carol_clinician")
        )
        body: dict[str, Any] = alarm.json()
        return body if body["state"] == "acknowledged" else None

    alarm = await eventually(acknowledged)
    assert alarm is not None, "not in time"
    assert alarm["acknowledged_by"] == user_id(cast, "nina_nurse")
    record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
    assert record["state"] == "acknowledged"


async def test_a_refusing_server_is_retried_with_backoff_then_given_up_on_the_record(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    await roster(api, cast)
    mailbox.refuse_with = "451 4.3.0 try again later"
    alert_id = await peters_alarm(api, cast)

    async def failed() -> dict[str, Any] | None:
        record = await escalation(api, cast.tokens["nina_nurse"], alert_id)
        emails = [d for d in record["deliveries"] if d["channel"] == "email"]
        return emails[0] if emails and emails[0]["status"] == "failed" else None

    delivery = await eventually(failed)
    assert delivery is not None, "not in time"
    assert delivery["attempts"] == 2
    assert "451" in delivery["reason"]
    assert mailbox.messages == []


async def test_a_channel_that_stays_down_raises_a_technical_alarm_until_it_delivers_again(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    # Three people told at once; each refusal is permanent, and three (the test's threshold)
    # open the circuit.
    await roster(api, cast, policy=[(0, "primary"), (0, "charge"), (0, "physician")])
    mailbox.refuse_with = "550 5.1.1 mailbox unavailable"
    await peters_alarm(api, cast)

    async def technical() -> list[dict[str, Any]]:
        alarms = await api.alerts(cast.tokens["alice_admin"], source="technical")
        return [a for a in alarms if a["rule"] == "notification_channel_down"]

    down = await eventually(technical)
    assert down[0]["state"] == "active" and down[0]["priority"] == "high"
    assert [e["channel"] for e in await published(api, "notification.channel.down")] == ["email"]

    # Olive's alarm waits for the circuit's probe, goes through, and closes it.
    mailbox.refuse_with = None
    response = await api.send(cast.devices["olives_monitor"], reading(heart_rate=165))
    assert response.status_code == 201
    await mailbox.wait_for(1, timeout=15)
    assert to_whom(mailbox) == [EMAILS["bob_other_ward"]]

    async def restored() -> bool:
        alarms = await api.alerts(cast.tokens["alice_admin"], source="technical")
        ours = [a for a in alarms if a["rule"] == "notification_channel_down"]
        return bool(ours) and ours[0]["state"] == "resolved"

    assert await eventually(restored), "not in time"


async def test_an_alarm_with_nobody_on_call_raises_a_technical_alarm_and_tells_the_fallback(
    api: Api, cast: Cast, mailbox: LocalMailbox
) -> None:
    response = await api.http.put(
        "/api/v1/notifications/settings",
        json={"fallback_email": "switchboard@stmary.example"},
        headers=cast.auth("alice_admin"),
    )
    assert response.status_code == 200, response.text
    alert_id = await peters_alarm(api, cast)

    await mailbox.wait_for(1, timeout=15)
    assert to_whom(mailbox) == ["switchboard@stmary.example"]
    assert alert_id not in mailbox.messages[0].subject

    async def unrouted() -> list[dict[str, Any]]:
        alarms = await api.alerts(cast.tokens["carol_clinician"], source="technical")
        return [a for a in alarms if a["rule"] == "no_one_on_call"]

    # In Peter's alarm list, seen by his ward's clinicians.
    technical = await eventually(unrouted)
    assert technical[0]["patient_id"] == cast.patients["peter"]["id"]

    # The technical alarm itself is shown, not paged about: that could go on for ever.
    async def escalated() -> bool:
        steps = await published(api, "alert.escalated")
        return any(e["alert_id"] == technical[0]["id"] for e in steps)

    assert not await eventually(escalated, timeout=1.0)
    assert [e["alert_id"] for e in await published(api, "notification.unrouted")] == [alert_id]
    assert to_whom(mailbox) == ["switchboard@stmary.example"]
