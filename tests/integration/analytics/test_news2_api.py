"""NEWS2 over HTTP: the calculator, the score kept for each patient from their monitors' vitals,
the alarm a high score raises, and the SpO2 scale a clinician chooses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.platform.clock import FrozenClock
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.integration.analytics.helpers import assert_problem, deliver, published
from tests.support.cast import Cast
from tests.support.client import HEALTHY_NEWS2, Api, bearer, now, reading, running

CALCULATOR = "/api/v1/analytics/news2"
HEALTHY = HEALTHY_NEWS2
PARAMETERS = {
    "respiratory_rate",
    "spo2",
    "supplemental_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
}


def vitals(at: dt.datetime, **changes: float) -> dict[str, Any]:
    """A monitor's reading of every vital NEWS2 needs (normal unless changed); alert (0)."""
    measured = {
        "respiratory_rate": 16.0,
        "spo2": 97.0,
        "systolic_bp": 125.0,
        "heart_rate": 72.0,
        "temperature": 37.0,
        "consciousness": 0.0,
    } | changes
    return reading(at, **measured)


async def calculate(api: Api, token: str, body: dict[str, Any]) -> httpx.Response:
    return await api.http.post(CALCULATOR, json=body, headers=bearer(token))


async def scores(api: Api, token: str, patient_id: str) -> httpx.Response:
    return await api.http.get(f"/api/v1/patients/{patient_id}/news2", headers=bearer(token))


async def set_scale(api: Api, token: str, patient_id: str, scale: Any) -> httpx.Response:
    return await api.http.put(
        f"/api/v1/patients/{patient_id}/news2-scale",
        json={"spo2_scale": scale},
        headers=bearer(token),
    )


async def test_the_calculator_scores_observations_for_any_signed_in_user(
    api: Api, cast: Cast
) -> None:
    for name in (
        "carol_clinician",
        "nina_nurse",
        "alice_admin",
        "tess_technician",
        "audrey_auditor",
    ):
        response = await calculate(api, cast.tokens[name], HEALTHY)
        assert response.status_code == 200, (name, response.text)
        assert response.json() == {
            "score": 0,
            "risk": "low",
            "components": dict.fromkeys(PARAMETERS, 0),
        }
    unsigned = await api.http.post(CALCULATOR, json=HEALTHY)
    assert unsigned.status_code == 401

    carol = cast.tokens["carol_clinician"]
    medium = HEALTHY | {
        "respiratory_rate": 22,
        "spo2": 95,
        "systolic_bp": 105,
        "pulse": 95,
        "temperature": 38.5,
    }
    body = (await calculate(api, carol, medium)).json()
    assert (body["score"], body["risk"]) == (6, "medium")
    assert body["components"] == {
        "respiratory_rate": 2,
        "spo2": 1,
        "supplemental_oxygen": 0,
        "systolic_bp": 1,
        "pulse": 1,
        "consciousness": 0,
        "temperature": 1,
    }
    confused = (await calculate(api, carol, HEALTHY | {"consciousness": "C"})).json()
    assert (confused["score"], confused["risk"]) == (3, "low-medium")
    on_scale_2 = HEALTHY | {"spo2": 96, "spo2_scale": 2, "supplemental_oxygen": True}
    body = (await calculate(api, carol, on_scale_2)).json()
    assert (body["components"]["spo2"], body["components"]["supplemental_oxygen"]) == (2, 2)
    assert (body["score"], body["risk"]) == (4, "low")


async def test_the_calculator_refuses_a_missing_or_impossible_observation_naming_it(
    api: Api, alice: str
) -> None:
    missing = {k: v for k, v in HEALTHY.items() if k != "pulse"}
    for body, field in (
        (missing, "pulse"),
        (HEALTHY | {"spo2": 101}, "spo2"),
        (HEALTHY | {"respiratory_rate": -1}, "respiratory_rate"),
        (HEALTHY | {"temperature": 60}, "temperature"),
        (HEALTHY | {"consciousness": "X"}, "consciousness"),
        (HEALTHY | {"spo2_scale": 3}, "spo2_scale"),
        (HEALTHY | {"supplemental_oxygen": "no"}, "supplemental_oxygen"),
        (HEALTHY | {"height": 180}, "height"),
    ):
        assert_problem(await calculate(api, alice, body), 422, field)


async def test_an_observation_of_the_wrong_type_is_refused_naming_it(api: Api, alice: str) -> None:
    # The error names the field as the document does, not a branch of the schema's union.
    refused = await calculate(api, alice, HEALTHY | {"pulse": "72"})
    assert_problem(refused, 422)
    assert [e["field"] for e in refused.json()["errors"]] == ["pulse"], refused.text


async def test_a_patient_whose_vitals_score_7_or_more_gets_a_high_news2_alarm_and_a_stored_score(
    api: Api, cast: Cast
) -> None:
    oximeter, peter = cast.devices["peters_oximeter"], cast.patients["peter"]["id"]
    carol = cast.tokens["carol_clinician"]
    # Respiratory rate 25 (3), SpO2 91 on air (3), systolic 100 (2): NEWS2 8.
    await deliver(api, oximeter, vitals(now(), respiratory_rate=25, spo2=91, systolic_bp=100))

    [alarm] = await api.alerts(carol)
    assert (alarm["rule"], alarm["priority"], alarm["state"]) == ("news2", "high", "active")
    assert (alarm["value"], alarm["threshold"]) == (8, 7)
    assert alarm["patient_id"] == peter and alarm["source"] == "clinical"

    history = await scores(api, carol, peter)
    assert history.status_code == 200, history.text
    assert history.json()["spo2_scale"] == 1
    [score] = history.json()["items"]
    assert (score["score"], score["risk"], score["spo2_scale"], score["live"]) == (
        8,
        "high",
        1,
        True,
    )
    assert score["components"] == {
        "respiratory_rate": 3,
        "spo2": 3,
        "supplemental_oxygen": 0,
        "systolic_bp": 2,
        "pulse": 0,
        "consciousness": 0,
        "temperature": 0,
    }
    assert (await scores(api, cast.tokens["nina_nurse"], peter)).status_code == 200
    assert_problem(await scores(api, cast.tokens["bob_other_ward"], peter), 404)
    assert_problem(await scores(api, cast.tokens["mallory_clinician"], peter), 404)
    assert_problem(await scores(api, cast.tokens["tess_technician"], peter), 403)


async def test_a_news2_alarm_escalates_with_the_score_and_resolves_when_it_falls(
    api: Api, cast: Cast
) -> None:
    oximeter = cast.devices["peters_oximeter"]
    carol = cast.tokens["carol_clinician"]
    t = now()
    # Respiratory rate 22 (2), SpO2 94 (1), systolic 105 (1), pulse 95 (1): NEWS2 5.
    worrying = {"respiratory_rate": 22.0, "spo2": 94.0, "systolic_bp": 105.0, "heart_rate": 95.0}
    await deliver(api, oximeter, vitals(t, **worrying))
    [alarm] = await api.alerts(carol)
    assert (alarm["rule"], alarm["priority"], alarm["value"]) == ("news2", "medium", 5)
    silenced = await api.http.post(
        f"/api/v1/alerts/{alarm['id']}/silence", json={"seconds": 120}, headers=bearer(carol)
    )
    assert silenced.status_code == 200, silenced.text
    assert silenced.json()["silenced_until"] is not None

    # Respiratory rate 25 (3), SpO2 91 (3): NEWS2 8, the same alarm now high.
    await deliver(
        api,
        oximeter,
        vitals(t + dt.timedelta(seconds=1), **worrying | {"respiratory_rate": 25.0, "spo2": 91.0}),
    )
    [worse] = await api.alerts(carol)
    assert worse["id"] == alarm["id"]
    assert (worse["priority"], worse["state"], worse["worst_value"]) == ("high", "active", 8)
    assert worse["silenced_until"] is None  # a silence never mutes a higher priority
    updates = [e for e in await published(api, "alert.updated") if e["alert_id"] == alarm["id"]]
    assert [e["priority"] for e in updates] == ["high"]

    await deliver(api, oximeter, vitals(t + dt.timedelta(seconds=2)))
    [over] = await api.alerts(carol)
    assert over["id"] == alarm["id"]
    assert over["state"] == "resolved" and over["resolved_at"] is not None
    history = (await scores(api, carol, cast.patients["peter"]["id"])).json()["items"]
    assert [s["score"] for s in history] == [0, 8, 5]


async def test_switching_a_patient_to_scale_2_rescores_an_spo2_of_88(api: Api, cast: Cast) -> None:
    oximeter, peter = cast.devices["peters_oximeter"], cast.patients["peter"]["id"]
    carol = cast.tokens["carol_clinician"]
    t = now()
    await deliver(api, oximeter, vitals(t, spo2=88))
    [on_scale_1] = (await scores(api, carol, peter)).json()["items"]
    assert (on_scale_1["components"]["spo2"], on_scale_1["spo2_scale"]) == (3, 1)
    assert (on_scale_1["score"], on_scale_1["risk"]) == (3, "low-medium")

    # A clinical decision: the patient's clinician alone makes it.
    for name, status in (
        ("alice_admin", 403),
        ("nina_nurse", 403),
        ("tess_technician", 403),
        ("bob_other_ward", 404),
        ("mallory_clinician", 404),
    ):
        assert_problem(await set_scale(api, cast.tokens[name], peter, 2), status)
    assert_problem(await set_scale(api, carol, peter, 3), 422, "spo2_scale")
    assert (await scores(api, carol, peter)).json()["spo2_scale"] == 1

    chosen = await set_scale(api, carol, peter, 2)
    assert chosen.status_code == 204, chosen.text
    assert (await scores(api, carol, peter)).json()["spo2_scale"] == 2

    await deliver(api, oximeter, reading(t + dt.timedelta(seconds=1), spo2=88))
    on_scale_2, earlier = (await scores(api, carol, peter)).json()["items"]
    assert (on_scale_2["components"]["spo2"], on_scale_2["spo2_scale"]) == (0, 2)
    assert (on_scale_2["score"], on_scale_2["risk"]) == (0, "low")
    assert earlier == on_scale_1
    assert await api.alerts(carol) == []


async def test_backfilled_vitals_are_scored_for_the_chart_but_page_no_one(
    settings: Settings,
) -> None:
    # A freshness window of one second makes readings a second old backfilled history.
    settings = settings.model_copy(
        update={"alerts": settings.alerts.model_copy(update={"freshness_seconds": 1.0})}
    )
    clock = FrozenClock(now())
    async with running(settings, runtime=bootstrap(settings, clock=clock)) as api:
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        patient_id = await api.create_patient(alice)
        device = await api.register_device(alice, patient_id=patient_id)
        taken = clock.now()
        clock.advance(seconds=2)
        await deliver(
            api,
            device,
            vitals(taken, respiratory_rate=25, spo2=91, systolic_bp=100),
            vitals(taken + dt.timedelta(milliseconds=500)),
        )

        history = (await scores(api, alice, patient_id)).json()["items"]
        assert [(s["score"], s["live"]) for s in history] == [(0, False), (8, False)]
        assert await api.alerts(alice) == []
