"""OWASP API6 (unrestricted access to sensitive business flows): the flows that open records,
silence or acknowledge alarms, admit people and configure alarms each hold their own bounds,
whoever is allowed to start them.

Their time limits (break-glass expiry, link expiry) and firmware signing are tested where those
flows live: tests/integration/identity/test_owasp_api_top10.py (break-glass lasts its
configured time), tests/integration/devices/test_firmware.py (an image is offered only once
its signature verifies).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from medcloud.notifications.notifier import link_key
from medcloud.notifications.signing import sign_link
from tests.security.conftest import Deployment
from tests.support.cast import PASSWORD
from tests.support.client import eventually, reading

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def olives_alarm(deployment: Deployment) -> str:
    """Raise (or find) an open alarm for Olive, of Oncology: bob's patient, not carol's."""
    api, olive = deployment.api, deployment.cast.patients["olive"]["id"]
    sent = await api.send(deployment.cast.devices["olives_monitor"], reading(heart_rate=165))
    assert sent.status_code == 201, sent.text

    async def open_alarms() -> list[dict[str, Any]]:
        found = await api.alerts(deployment.cast.tokens["alice_admin"], patient_id=olive)
        # Her heart rate's alarm, not a technical one beside it (no one on call, once another
        # test has set up paging in the organisation), which no one is paged for.
        return [
            alarm
            for alarm in found
            if alarm["state"] != "resolved" and alarm["measurement"] == "heart_rate"
        ]

    found = await eventually(open_alarms, timeout=60)
    assert found, "Olive's alarm was not raised"
    return str(found[0]["id"])


async def test_breaking_the_glass_needs_a_reason_opens_one_patient_and_is_audited(
    deployment: Deployment,
) -> None:
    http, carol = deployment.api.http, deployment.cast.auth("carol_clinician")
    olive = deployment.cast.patients["olive"]["id"]
    assert (await http.get(f"/api/v1/patients/{olive}", headers=carol)).status_code == 404
    for reason in ("", "urgent", "x" * 501):
        refused = await http.post(
            f"/api/v1/patients/{olive}/break-glass", json={"reason": reason}, headers=carol
        )
        assert refused.status_code == 422, reason
    assert (await http.get(f"/api/v1/patients/{olive}", headers=carol)).status_code == 404

    reason = f"rapid response call on Oncology, {uuid.uuid4().hex[:6]}"
    granted = await http.post(
        f"/api/v1/patients/{olive}/break-glass", json={"reason": reason}, headers=carol
    )
    assert granted.status_code == 201, granted.text
    assert (await http.get(f"/api/v1/patients/{olive}", headers=carol)).status_code == 200

    async def audited() -> list[dict[str, Any]]:
        response = await http.get(
            "/api/v1/audit",
            params={"action": "patient.break_glass", "patient_id": olive},
            headers=deployment.cast.auth("audrey_auditor"),
        )
        entries: list[dict[str, Any]] = response.json()["items"]
        return [e for e in entries if e["detail"].get("reason") == reason]

    [entry] = await eventually(audited, timeout=60)
    assert entry["actor_id"] == deployment.cast.user_ids["carol_clinician"]


async def test_an_acknowledge_link_works_once(deployment: Deployment) -> None:
    alarm = await olives_alarm(deployment)

    async def escalating() -> bool:
        # A link acknowledges the alarm's escalation, which the notifications context starts
        # when it hears of the alarm.
        response = await deployment.api.http.get(
            f"/api/v1/alerts/{alarm}/notifications", headers=deployment.cast.auth("alice_admin")
        )
        return response.status_code == 200

    # The relay may have a backlog of audit events to publish first: allow it a while.
    assert await eventually(escalating, timeout=60)
    expires = int(dt.datetime.now(dt.UTC).timestamp()) + 600
    token = sign_link(
        link_key(deployment.settings),
        alert_id=alarm,
        user_id=deployment.cast.user_ids["bob_other_ward"],
        expires_at=expires,
        nonce=uuid.uuid4().hex,
    )
    http = deployment.api.http
    first = await http.post("/api/v1/notifications/acknowledge", params={"token": token})
    again = await http.post("/api/v1/notifications/acknowledge", params={"token": token})
    assert first.status_code == 200, first.text
    assert again.status_code == 409, again.text


async def test_silencing_an_alarm_is_bounded_in_time(deployment: Deployment) -> None:
    alarm = await olives_alarm(deployment)
    limit = deployment.settings.alerts.max_silence_seconds
    bob = deployment.cast.auth("bob_other_ward")
    for seconds, status in ((limit + 1, 422), (10**9, 422), (limit, 200)):
        response = await deployment.api.http.post(
            f"/api/v1/alerts/{alarm}/silence", json={"seconds": seconds}, headers=bob
        )
        assert response.status_code == status, (seconds, response.text)


async def test_an_invitation_admits_one_person_once(deployment: Deployment) -> None:
    http = deployment.api.http
    invited = await http.post(
        "/api/v1/users",
        json={"email": f"{uuid.uuid4().hex[:8]}@stmary.example", "role": "nurse"},
        headers=deployment.cast.auth("alice_admin"),
    )
    assert invited.status_code == 201, invited.text
    token = invited.json()["invitation_token"]
    first = await http.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    again = await http.post(
        "/api/v1/auth/invitations/accept",
        json={"token": token, "password": "a-different-passphrase-77"},
    )
    assert first.status_code == 204, first.text
    assert 400 <= again.status_code < 500, again.text


async def test_only_an_admin_configures_alarms_for_the_whole_organisation(
    deployment: Deployment,
) -> None:
    http = deployment.api.http
    rule = {
        "key": f"organisation_{uuid.uuid4().hex[:8]}",
        "kind": "threshold",
        "scope": "organisation",
        "measurement": "spo2",
        "priority": "low",
        "low": 50,
    }
    response = await http.post(
        "/api/v1/alarm-rules", json=rule, headers=deployment.cast.auth("bob_other_ward")
    )
    if response.status_code == 201:
        # Take it back at once: the deployment is shared, and this rule pages the whole
        # organisation.
        removed = await http.delete(
            f"/api/v1/alarm-rules/{response.json()['id']}",
            headers=deployment.cast.auth("alice_admin"),
        )
        assert removed.status_code == 204
    assert response.status_code == 403, response.text
