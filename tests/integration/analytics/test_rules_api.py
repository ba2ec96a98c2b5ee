"""Alarm rules over HTTP: validation naming the field, versions, which rule applies to a patient
(patient over ward over organisation over the defaults), who may change them, and the rule a
patient's readings are judged by."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.analytics.helpers import assert_problem, deliver
from tests.support.cast import Cast, patient
from tests.support.client import Api, bearer, now, reading

RULES = "/api/v1/alarm-rules"


def heart_rate_rule(**changes: Any) -> dict[str, Any]:
    return {
        "key": "heart_rate",
        "kind": "threshold",
        "measurement": "heart_rate",
        "priority": "high",
        "low": 40,
        "high": 120,
        "hysteresis": 5,
    } | changes


async def create(api: Api, token: str, **changes: Any) -> httpx.Response:
    return await api.http.post(RULES, json=heart_rate_rule(**changes), headers=bearer(token))


async def created(api: Api, token: str, **changes: Any) -> dict[str, Any]:
    response = await create(api, token, **changes)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def applied(api: Api, token: str, patient_id: str) -> dict[str, dict[str, Any]]:
    """The rules that apply to a patient, by key."""
    response = await api.http.get(RULES, params={"patient_id": patient_id}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return {rule["key"]: rule for rule in response.json()["items"]}


async def test_an_invalid_rule_is_refused_naming_the_field(api: Api, cast: Cast) -> None:
    carol = cast.tokens["carol_clinician"]
    for changes, field in (
        ({"low": 120, "high": 40}, "low"),
        ({"measurement": "blood_magic"}, "measurement"),
        ({"delay_seconds": 11}, "delay_seconds"),
        ({"key": "Heart Rate"}, "key"),
        ({"low": 100, "high": 110, "hysteresis": 5}, "hysteresis"),
        ({"high": 400}, "high"),
        ({"scope": "patient", "scope_id": "no-such-patient"}, "scope_id"),
        ({"scope": "patient", "scope_id": cast.patients["mallorys_patient"]["id"]}, "scope_id"),
        ({"scope": "ward", "scope_id": cast.wards["mallory"]}, "scope_id"),
        ({"scope": "organisation", "scope_id": cast.wards["cardiology"]}, "scope_id"),
        ({"scope": "default"}, "scope"),
        ({"priority": "urgent"}, "priority"),
        ({"kind": "astrology"}, "kind"),
        ({"latching": "yes"}, "latching"),
        ({"colour": "red"}, "colour"),
    ):
        assert_problem(await create(api, carol, **changes), 422, field)
    # A heart-rate delay may be 10 s at most; 10 s is fine. A rule for the whole organisation
    # changes every patient's alarms, which only an admin may do.
    assert_problem(await create(api, carol, delay_seconds=10), 403)
    alice = cast.tokens["alice_admin"]
    assert (await create(api, alice, delay_seconds=10)).status_code == 201

    listed = await api.http.get(RULES, headers=bearer(carol))
    assert [(r["key"], r["delay_seconds"]) for r in listed.json()["items"]] == [("heart_rate", 10)]


async def test_a_limit_of_the_wrong_type_is_refused_naming_the_field(api: Api, alice: str) -> None:
    # The error names the field as the document does, not a branch of the schema's union.
    for changes, field in (
        ({"high": "120"}, "high"),
        ({"delay_seconds": True}, "delay_seconds"),
        ({"hysteresis": [5]}, "hysteresis"),
    ):
        refused = await create(api, alice, **changes)
        assert_problem(refused, 422)
        assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text


async def test_a_rule_starts_at_version_1_and_each_save_adds_one(api: Api, cast: Cast) -> None:
    alice, carol = cast.tokens["alice_admin"], cast.tokens["carol_clinician"]
    rule = await created(api, alice, high=130)
    assert (rule["version"], rule["scope"], rule["scope_id"], rule["high"]) == (
        1,
        "organisation",
        "",
        130,
    )
    assert rule["id"]

    # Carol sees the organisation's rule but may not change it; alice may.
    refused = await api.http.put(
        f"{RULES}/{rule['id']}", json=heart_rate_rule(high=135), headers=bearer(carol)
    )
    assert_problem(refused, 403)
    changed = await api.http.put(
        f"{RULES}/{rule['id']}", json=heart_rate_rule(high=135), headers=bearer(alice)
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["id"], changed.json()["version"], changed.json()["high"]) == (
        rule["id"],
        2,
        135,
    )

    # Saving the same key at the same scope again is a new version of the same rule.
    again = await created(api, alice, high=128, latching=True)
    assert (again["id"], again["version"], again["latching"]) == (rule["id"], 3, True)

    listed = await api.http.get(RULES, headers=bearer(alice))
    assert listed.status_code == 200, listed.text
    [only] = listed.json()["items"]
    assert (only["id"], only["version"], only["high"]) == (rule["id"], 3, 128)
    defaults = {d["key"]: d for d in listed.json()["defaults"]}
    assert (defaults["heart_rate"]["low"], defaults["heart_rate"]["high"]) == (40, 120)
    assert (defaults["heart_rate"]["version"], defaults["heart_rate"]["id"]) == (0, None)
    assert defaults["heart_rate"]["scope"] == "default"

    missing = await api.http.put(
        f"{RULES}/00000000-0000-4000-8000-000000000000",
        json=heart_rate_rule(),
        headers=bearer(alice),
    )
    assert_problem(missing, 404)


async def test_the_narrowest_rule_applies_to_a_patient(api: Api, cast: Cast) -> None:
    alice, carol = cast.tokens["alice_admin"], cast.tokens["carol_clinician"]
    peter, olive = cast.patients["peter"]["id"], cast.patients["olive"]["id"]
    paula = (await patient(api, alice, "P-1003", cast.wards["cardiology"]))["id"]

    # Only the defaults so far.
    assert (await applied(api, carol, peter))["heart_rate"]["scope"] == "default"
    assert {"heart_rate", "news2"} <= (await applied(api, carol, peter)).keys()

    await created(api, alice, high=130)
    await created(api, carol, high=125, scope="ward", scope_id=cast.wards["cardiology"])
    mine = await created(api, carol, high=110, scope="patient", scope_id=peter)

    def limit(rules: dict[str, dict[str, Any]]) -> tuple[str, float]:
        return rules["heart_rate"]["scope"], rules["heart_rate"]["high"]

    assert limit(await applied(api, carol, peter)) == ("patient", 110)
    assert limit(await applied(api, carol, paula)) == ("ward", 125)
    assert limit(await applied(api, alice, olive)) == ("organisation", 130)
    assert (await applied(api, carol, peter))["news2"]["scope"] == "default"

    deleted = await api.http.delete(f"{RULES}/{mine['id']}", headers=bearer(carol))
    assert deleted.status_code == 204, deleted.text
    assert limit(await applied(api, carol, peter)) == ("ward", 125)
    again = await api.http.delete(f"{RULES}/{mine['id']}", headers=bearer(carol))
    assert_problem(again, 404)

    # A disabled patient rule turns its key off for that patient alone.
    await created(api, carol, scope="patient", scope_id=peter, enabled=False)
    assert "heart_rate" not in await applied(api, carol, peter)
    assert limit(await applied(api, carol, paula)) == ("ward", 125)


async def test_nurses_read_rules_but_cannot_change_them_and_other_organisations_cannot_see_them(
    api: Api, cast: Cast
) -> None:
    alice, nina = cast.tokens["alice_admin"], cast.tokens["nina_nurse"]
    peter, olive = cast.patients["peter"]["id"], cast.patients["olive"]["id"]
    rule = await created(api, alice, high=130)

    assert (await api.http.get(RULES, headers=bearer(nina))).status_code == 200
    assert (await applied(api, nina, peter))["heart_rate"]["high"] == 130
    outside_care = await api.http.get(RULES, params={"patient_id": olive}, headers=bearer(nina))
    assert_problem(outside_care, 404)
    assert_problem(await create(api, nina, high=125), 403)
    put = await api.http.put(f"{RULES}/{rule['id']}", json=heart_rate_rule(), headers=bearer(nina))
    assert_problem(put, 403)
    assert_problem(await api.http.delete(f"{RULES}/{rule['id']}", headers=bearer(nina)), 403)
    for name in ("tess_technician", "audrey_auditor"):
        assert_problem(await api.http.get(RULES, headers=cast.auth(name)), 403)
        assert_problem(await create(api, cast.tokens[name]), 403)

    mallory = cast.tokens["mallory_other_org"]
    theirs = await api.http.get(RULES, headers=bearer(mallory))
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["items"] == []
    put = await api.http.put(
        f"{RULES}/{rule['id']}", json=heart_rate_rule(high=100), headers=bearer(mallory)
    )
    assert_problem(put, 404)
    assert_problem(await api.http.delete(f"{RULES}/{rule['id']}", headers=bearer(mallory)), 404)
    peters_rules = await api.http.get(RULES, params={"patient_id": peter}, headers=bearer(mallory))
    assert_problem(peters_rules, 404)

    [kept] = (await api.http.get(RULES, headers=bearer(alice))).json()["items"]
    assert (kept["id"], kept["version"], kept["high"]) == (rule["id"], 1, 130)


async def test_a_patients_own_limit_raises_the_alarm_which_names_the_rule_and_its_version(
    api: Api, cast: Cast
) -> None:
    carol, alice = cast.tokens["carol_clinician"], cast.tokens["alice_admin"]
    peter = cast.patients["peter"]["id"]
    rule = await created(api, carol, high=110, scope="patient", scope_id=peter)
    changed = await api.http.put(
        f"{RULES}/{rule['id']}",
        json=heart_rate_rule(high=105, scope="patient", scope_id=peter),
        headers=bearer(carol),
    )
    assert changed.status_code == 200, changed.text

    t = now()
    await deliver(api, cast.devices["peters_oximeter"], reading(t, heart_rate=108))
    await deliver(api, cast.devices["olives_monitor"], reading(t, heart_rate=108))
    [alarm] = await api.alerts(alice)
    assert alarm["patient_id"] == peter
    assert (alarm["rule"], alarm["threshold"], alarm["value"]) == ("heart_rate_high", 105, 108)
    assert (alarm["rule_id"], alarm["rule_version"]) == (rule["id"], 2)
