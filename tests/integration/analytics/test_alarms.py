"""Alarms end to end (IEC 60601-1-8): readings raise one alarm per patient and condition, which
follows the values, resolves when they are back, and moves as people acknowledge and silence it;
only fresh readings page anyone, and each ward sees its own patients' alarms."""

from __future__ import annotations

import datetime as dt

from tests.integration.analytics.helpers import (
    SECOND,
    acknowledge,
    assert_problem,
    audited,
    deliver,
    get_alarm,
    instant,
    published,
    save_rule,
    silence,
)
from tests.support.cast import Cast
from tests.support.client import Api, bearer, now, reading


async def test_a_monitor_reporting_high_rates_raises_one_alarm_that_follows_them_until_normal(
    api: Api, cast: Cast
) -> None:
    oximeter, peter = cast.devices["peters_oximeter"], cast.patients["peter"]["id"]
    carol = cast.tokens["carol_clinician"]
    t = now()

    await deliver(api, oximeter, reading(t, heart_rate=130))
    [alarm] = await api.alerts(carol)
    assert (alarm["rule"], alarm["source"], alarm["measurement"]) == (
        "heart_rate_high",
        "clinical",
        "heart_rate",
    )
    assert (alarm["state"], alarm["priority"], alarm["severity"]) == ("active", "high", "high")
    assert (alarm["value"], alarm["last_value"], alarm["worst_value"]) == (130, 130, 130)
    assert alarm["threshold"] == 120
    assert (alarm["patient_id"], alarm["device_id"]) == (peter, oximeter["id"])
    assert alarm["condition_active"] is True and alarm["latching"] is False
    assert alarm["resolved_at"] is None and alarm["acknowledged_at"] is None
    assert instant(alarm["reading_timestamp"]) == t

    # Still too fast: the same alarm follows the values instead of a new one being raised.
    await deliver(
        api, oximeter, reading(t + SECOND, heart_rate=145), reading(t + 2 * SECOND, heart_rate=138)
    )
    await deliver(api, oximeter, reading(t + 3 * SECOND, heart_rate=135))
    [same] = await api.alerts(carol)
    assert same["id"] == alarm["id"]
    assert (same["value"], same["last_value"], same["worst_value"]) == (130, 135, 145)
    assert same["state"] == "active"
    assert instant(same["last_reading_at"]) == t + 3 * SECOND
    assert instant(same["reading_timestamp"]) == t

    await deliver(api, oximeter, reading(t + 4 * SECOND, heart_rate=80))
    [over] = await api.alerts(carol)
    assert over["id"] == alarm["id"]
    assert over["state"] == "resolved" and over["resolved_at"] is not None
    assert over["condition_active"] is False
    assert (over["last_value"], over["worst_value"]) == (80, 145)
    assert await api.alerts(carol, state="open") == []

    # A later episode is a new alarm; the first stays resolved.
    await deliver(api, oximeter, reading(t + 5 * SECOND, heart_rate=125))
    newest, first = await api.alerts(carol)
    assert first["id"] == alarm["id"] and first["state"] == "resolved"
    assert newest["id"] != alarm["id"]
    assert (newest["state"], newest["value"], newest["worst_value"]) == ("active", 125, 125)
    assert [a["id"] for a in await api.alerts(carol, state="open")] == [newest["id"]]
    assert [a["id"] for a in await api.alerts(carol, state="resolved")] == [alarm["id"]]


async def test_one_batch_holding_two_episodes_raises_two_alarms_and_leaves_the_second_open(
    api: Api, alice: str
) -> None:
    # A monitor uploading what it buffered: too fast, back to normal, too fast again.
    device = await api.register_device(alice)
    t = now()
    await deliver(
        api,
        device,
        reading(t, heart_rate=130),
        reading(t + SECOND, heart_rate=80),
        reading(t + 2 * SECOND, heart_rate=135),
        reading(t + 3 * SECOND, heart_rate=136),
    )
    alarms = sorted(await api.alerts(alice), key=lambda a: a["reading_timestamp"])
    assert [(a["state"], a["value"]) for a in alarms] == [("resolved", 130), ("active", 135)]
    assert alarms[1]["last_value"] == 136


async def test_one_batch_ending_an_open_alarm_and_starting_a_new_episode_does_both(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    t = now()
    await deliver(api, device, reading(t, heart_rate=130))
    [first] = await api.alerts(alice)
    await deliver(
        api, device, reading(t + SECOND, heart_rate=80), reading(t + 2 * SECOND, heart_rate=140)
    )
    alarms = {a["id"]: a for a in await api.alerts(alice)}
    assert alarms[first["id"]]["state"] == "resolved", alarms[first["id"]]
    [second] = [a for a in alarms.values() if a["id"] != first["id"]]
    assert (second["state"], second["value"]) == ("active", 140)


async def test_two_monitors_on_one_patient_share_one_alarm(api: Api, cast: Cast) -> None:
    peter = cast.patients["peter"]["id"]
    alice, carol = cast.tokens["alice_admin"], cast.tokens["carol_clinician"]
    oximeter = cast.devices["peters_oximeter"]
    monitor = await api.register_device(alice, "BM-9", peter)
    t = now()
    await deliver(api, oximeter, reading(t, heart_rate=130))
    await deliver(api, monitor, reading(t + SECOND, heart_rate=140))
    [alarm] = await api.alerts(carol)
    assert (alarm["device_id"], alarm["value"]) == (oximeter["id"], 130)
    assert (alarm["last_value"], alarm["worst_value"]) == (140, 140)
    await deliver(api, monitor, reading(t + 2 * SECOND, heart_rate=90))
    [over] = await api.alerts(carol)
    assert over["state"] == "resolved"


async def test_a_reading_dated_1900_is_refused_naming_its_timestamp_and_nothing_is_stored(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    unset_clock = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
    assert_problem(await api.send(device, reading(unset_clock, heart_rate=150)), 422, "timestamp")

    just_before = dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    batch = {"readings": [reading(heart_rate=150), reading(just_before, heart_rate=150)]}
    refused = await api.send(device, batch)
    assert_problem(refused, 422, "readings.1.timestamp")
    assert "readings.0.timestamp" not in [e["field"] for e in refused.json()["errors"]]

    assert await api.readings(alice, device["id"]) == []
    assert await published(api, "device.data.collected") == []
    assert await api.alerts(alice) == []


async def test_a_number_as_timestamp_is_refused(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    seconds_since_1970 = int(now().timestamp())
    single = {"timestamp": seconds_since_1970, "measurements": {"heart_rate": 150}}
    assert_problem(await api.send(device, single), 422, "timestamp")
    batch = {"readings": [{"timestamp": float(seconds_since_1970), "measurements": {"spo2": 97}}]}
    assert_problem(await api.send(device, batch), 422, "readings.0.timestamp")
    assert await api.readings(alice, device["id"]) == []
    assert await published(api, "device.data.collected") == []


async def test_a_reading_two_hours_old_is_stored_but_pages_no_one(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    two_hours_ago = now() - dt.timedelta(hours=2)

    await deliver(api, device, reading(two_hours_ago, heart_rate=150))
    assert [(r["type"], r["value"]) for r in await api.readings(alice, device["id"])] == [
        ("heart_rate", 150)
    ]
    assert await api.alerts(alice) == []

    # The same value measured now does page: the old one was judged, and judged stale.
    fresh = now()
    await deliver(api, device, reading(fresh, heart_rate=150))
    [alarm] = await api.alerts(alice)
    assert instant(alarm["reading_timestamp"]) == fresh
    assert alarm["patient_id"] is None and alarm["device_id"] == device["id"]

    # Nor does an old normal reading end the alarm.
    await deliver(api, device, reading(two_hours_ago + SECOND, heart_rate=70))
    [still] = await api.alerts(alice)
    assert (still["id"], still["state"], still["last_value"]) == (alarm["id"], "active", 150)


async def test_a_reading_arriving_late_does_not_end_an_alarm_raised_by_a_newer_one(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    t = now()
    await deliver(api, device, reading(t, heart_rate=150))
    # Measured 10 s before the reading that raised the alarm, delivered after it.
    await deliver(api, device, reading(t - 10 * SECOND, heart_rate=80))
    [alarm] = await api.alerts(alice)
    assert alarm["state"] == "active", alarm
    assert (alarm["last_value"], instant(alarm["last_reading_at"])) == (150, t)


async def test_an_episode_delivered_after_newer_normal_readings_still_raises_its_alarm(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    t = now()
    await deliver(api, device, reading(t, heart_rate=75))
    # Measured before the normal reading, delivered after it (another relay, a flushed buffer).
    await deliver(api, device, *(reading(t - (3 - i) * SECOND, heart_rate=140) for i in range(3)))
    [alarm] = await api.alerts(alice)
    assert (alarm["rule"], alarm["value"]) == ("heart_rate_high", 140)
    assert instant(alarm["reading_timestamp"]) == t - 3 * SECOND
    # The episode's own late readings raise nothing more once its alarm has ended.
    await deliver(api, device, reading(t + SECOND, heart_rate=75))
    await deliver(api, device, reading(t - 2.5 * SECOND, heart_rate=141))
    assert [a["state"] for a in await api.alerts(alice)] == ["resolved"]


async def test_a_condition_shorter_than_its_delay_raises_nothing_and_a_longer_one_raises_one(
    api: Api, cast: Cast
) -> None:
    oximeter, peter = cast.devices["peters_oximeter"], cast.patients["peter"]["id"]
    carol = cast.tokens["carol_clinician"]
    rule = await save_rule(api, carol, scope="patient", scope_id=peter, delay_seconds=5)
    t = now()

    # 150 for 3 s, then normal: shorter than the 5 s delay.
    for second in range(4):
        await deliver(api, oximeter, reading(t + second * SECOND, heart_rate=150))
    await deliver(api, oximeter, reading(t + 4 * SECOND, heart_rate=80))
    assert await api.alerts(carol) == []

    # 160 onwards from t2: nothing for 4 s, the alarm at the first reading 5 s after onset.
    t2 = t + 10 * SECOND
    for second in range(5):
        await deliver(api, oximeter, reading(t2 + second * SECOND, heart_rate=160 + second))
    assert await api.alerts(carol) == []
    await deliver(api, oximeter, reading(t2 + 5 * SECOND, heart_rate=165))
    await deliver(api, oximeter, reading(t2 + 6 * SECOND, heart_rate=166))

    [alarm] = await api.alerts(carol)
    assert alarm["rule"] == "heart_rate_high"
    assert instant(alarm["reading_timestamp"]) == t2 + 5 * SECOND
    assert (alarm["value"], alarm["last_value"], alarm["worst_value"]) == (165, 166, 166)
    assert (alarm["rule_id"], alarm["rule_version"]) == (rule["id"], 1)


async def test_hysteresis_keeps_one_alarm_open_while_the_rate_hovers_at_the_limit(
    api: Api, cast: Cast
) -> None:
    oximeter = cast.devices["peters_oximeter"]
    nina = cast.tokens["nina_nurse"]
    t = now()

    first_id = None
    for second, rate in enumerate([121, 119, 121, 118, 121, 116]):
        await deliver(api, oximeter, reading(t + second * SECOND, heart_rate=rate))
        [alarm] = await api.alerts(nina)
        first_id = first_id or alarm["id"]
        assert alarm["id"] == first_id, f"a second alarm after {rate}"
        assert alarm["state"] == "active", f"resolved by {rate}, inside the 5 bpm band"
        assert alarm["last_value"] == rate

    await deliver(api, oximeter, reading(t + 6 * SECOND, heart_rate=114))
    [alarm] = await api.alerts(nina)
    assert alarm["id"] == first_id
    assert alarm["state"] == "resolved"
    assert (alarm["value"], alarm["worst_value"], alarm["last_value"]) == (121, 121, 114)
    assert len(await published(api, "alert.raised")) == 1


async def test_a_latching_alarm_outlives_its_condition_until_it_is_acknowledged(
    api: Api, cast: Cast
) -> None:
    oximeter, peter = cast.devices["peters_oximeter"], cast.patients["peter"]["id"]
    carol, nina = cast.tokens["carol_clinician"], cast.tokens["nina_nurse"]
    await save_rule(api, carol, scope="patient", scope_id=peter, latching=True)
    t = now()

    await deliver(api, oximeter, reading(t, heart_rate=130))
    [alarm] = await api.alerts(nina)
    assert alarm["latching"] is True and alarm["condition_active"] is True

    await deliver(api, oximeter, reading(t + SECOND, heart_rate=80))
    await deliver(api, oximeter, reading(t + 2 * SECOND, heart_rate=75))
    [latched] = await api.alerts(nina)
    assert latched["id"] == alarm["id"]
    assert latched["state"] == "active"
    assert latched["condition_active"] is False
    assert latched["resolved_at"] is None
    assert latched["last_value"] == 75
    [update] = [e for e in await published(api, "alert.updated") if e["alert_id"] == alarm["id"]]
    assert update["condition_active"] is False and update["state"] == "active"

    # Back while still latched: the same alarm, its condition active again.
    await deliver(api, oximeter, reading(t + 3 * SECOND, heart_rate=131))
    [again] = await api.alerts(nina)
    assert again["id"] == alarm["id"]
    assert again["condition_active"] is True and again["worst_value"] == 131
    await deliver(api, oximeter, reading(t + 4 * SECOND, heart_rate=78))
    [latched] = await api.alerts(nina)
    assert (latched["state"], latched["condition_active"]) == ("active", False)

    acknowledged = await acknowledge(api, nina, alarm["id"])
    assert acknowledged.status_code == 200, acknowledged.text
    body = acknowledged.json()
    assert body["state"] == "resolved"
    assert body["resolved_at"] is not None and body["acknowledged_at"] is not None
    assert body["acknowledged_by"] == cast.user_ids["nina_nurse"]
    stored = (await get_alarm(api, nina, alarm["id"])).json()
    assert stored["state"] == "resolved" and stored["resolved_at"] is not None


async def test_a_latching_alarm_acknowledged_while_its_condition_holds_resolves_when_it_ends(
    api: Api, cast: Cast
) -> None:
    oximeter, peter = cast.devices["peters_oximeter"], cast.patients["peter"]["id"]
    carol = cast.tokens["carol_clinician"]
    await save_rule(api, carol, scope="patient", scope_id=peter, latching=True)
    t = now()

    await deliver(api, oximeter, reading(t, heart_rate=130))
    [alarm] = await api.alerts(carol)
    acknowledged = await acknowledge(api, carol, alarm["id"])
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["state"] == "acknowledged"

    await deliver(api, oximeter, reading(t + SECOND, heart_rate=132))
    [held] = await api.alerts(carol)
    assert (held["state"], held["last_value"]) == ("acknowledged", 132)

    await deliver(api, oximeter, reading(t + 2 * SECOND, heart_rate=90))
    [over] = await api.alerts(carol)
    assert over["id"] == alarm["id"]
    assert over["state"] == "resolved" and over["resolved_at"] is not None


async def test_acknowledging_and_silencing_move_one_alarm_and_leave_the_other_alone(
    api: Api, cast: Cast
) -> None:
    oximeter = cast.devices["peters_oximeter"]
    alice, carol = cast.tokens["alice_admin"], cast.tokens["carol_clinician"]
    await save_rule(
        api,
        alice,
        key="spo2",
        measurement="spo2",
        priority="medium",
        low=90,
        high=None,
        hysteresis=2,
    )
    t = now()
    await deliver(api, oximeter, reading(t, heart_rate=150, spo2=85))
    alarms = {a["rule"]: a for a in await api.alerts(carol)}
    assert sorted(alarms) == ["heart_rate_high", "spo2_low"]
    heart, oxygen = alarms["heart_rate_high"], alarms["spo2_low"]
    assert oxygen["priority"] == "medium" and oxygen["threshold"] == 90

    # Silence: bounded, and only the alarm silenced.
    assert_problem(await silence(api, carol, heart["id"], 121), 422, "seconds")
    assert_problem(await silence(api, carol, heart["id"], 0), 422, "seconds")
    before = now()
    silenced = await silence(api, carol, heart["id"], 60)
    assert silenced.status_code == 200, silenced.text
    until = instant(silenced.json()["silenced_until"])
    assert until is not None
    assert before + dt.timedelta(seconds=59) <= until <= now() + dt.timedelta(seconds=61)
    assert silenced.json()["state"] == "active"
    untouched = (await get_alarm(api, carol, oxygen["id"])).json()
    assert untouched["silenced_until"] is None and untouched["state"] == "active"
    assert (await silence(api, carol, heart["id"], 120)).status_code == 200

    # Acknowledge: once.
    acknowledged = await acknowledge(api, carol, heart["id"])
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["state"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"] == cast.user_ids["carol_clinician"]
    assert_problem(await acknowledge(api, carol, heart["id"]), 409)
    assert (await silence(api, carol, heart["id"], 30)).status_code == 200
    assert [a["id"] for a in await api.alerts(carol, state="acknowledged")] == [heart["id"]]
    assert [a["id"] for a in await api.alerts(carol, state="active")] == [oxygen["id"]]
    assert [a["id"] for a in await api.alerts(carol, priority="medium")] == [oxygen["id"]]
    assert (await get_alarm(api, carol, oxygen["id"])).json()["state"] == "active"

    # The heart rate is back: the acknowledged alarm resolves and moves no more.
    await deliver(api, oximeter, reading(t + SECOND, heart_rate=80, spo2=86))
    resolved = (await get_alarm(api, carol, heart["id"])).json()
    assert resolved["state"] == "resolved" and resolved["resolved_at"] is not None
    assert_problem(await acknowledge(api, carol, heart["id"]), 409)
    assert_problem(await silence(api, carol, heart["id"], 30), 409)
    assert [a["id"] for a in await api.alerts(carol, state="open")] == [oxygen["id"]]

    figures = await api.http.get("/api/v1/analytics/alarm-figures", headers=bearer(alice))
    assert figures.status_code == 200, figures.text
    total = figures.json()["total"]
    assert (total["alarms"], total["acknowledged"], total["silenced_share"]) == (2, 1, 0.5)
    assert {(row["rule"], row["alarms"]) for row in figures.json()["rows"]} == {
        ("heart_rate_high", 1),
        ("spo2_low", 1),
    }
    refused = await api.http.get(
        "/api/v1/analytics/alarm-figures", headers=cast.auth("tess_technician")
    )
    assert refused.status_code == 403


async def test_ward_staff_see_and_acknowledge_only_their_own_patients_alarms(
    api: Api, cast: Cast
) -> None:
    peters, olives = cast.devices["peters_oximeter"], cast.devices["olives_monitor"]
    await deliver(api, peters, reading(heart_rate=150))
    await deliver(api, olives, reading(heart_rate=30))
    everyone = await api.alerts(cast.tokens["alice_admin"])
    by_patient = {a["patient_id"]: a for a in everyone}
    assert len(everyone) == 2
    peters_alarm = by_patient[cast.patients["peter"]["id"]]
    olives_alarm = by_patient[cast.patients["olive"]["id"]]
    assert olives_alarm["rule"] == "heart_rate_low"

    for name in ("carol_clinician", "nina_nurse"):
        assert [a["id"] for a in await api.alerts(cast.tokens[name])] == [peters_alarm["id"]]
        assert (await get_alarm(api, cast.tokens[name], peters_alarm["id"])).status_code == 200
        assert (await get_alarm(api, cast.tokens[name], olives_alarm["id"])).status_code == 404
        filtered = await api.alerts(cast.tokens[name], patient_id=cast.patients["olive"]["id"])
        assert filtered == []
    bob = cast.tokens["bob_other_ward"]
    assert [a["id"] for a in await api.alerts(bob)] == [olives_alarm["id"]]
    assert (await get_alarm(api, bob, peters_alarm["id"])).status_code == 404

    for name in ("mallory_other_org", "mallory_clinician"):
        assert await api.alerts(cast.tokens[name]) == []
        assert_problem(await get_alarm(api, cast.tokens[name], peters_alarm["id"]), 404)
        assert_problem(await acknowledge(api, cast.tokens[name], peters_alarm["id"]), 404)
    for name in ("tess_technician", "audrey_auditor"):
        listed = await api.http.get("/api/v1/alerts", headers=cast.auth(name))
        assert_problem(listed, 403)
        assert_problem(await get_alarm(api, cast.tokens[name], peters_alarm["id"]), 403)
        assert_problem(await acknowledge(api, cast.tokens[name], peters_alarm["id"]), 403)

    nina = cast.tokens["nina_nurse"]
    assert_problem(await acknowledge(api, nina, olives_alarm["id"]), 404)
    assert_problem(await silence(api, nina, olives_alarm["id"], 30), 404)
    assert (await get_alarm(api, bob, olives_alarm["id"])).json()["state"] == "active"
    acknowledged = await acknowledge(api, nina, peters_alarm["id"])
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["state"] == "acknowledged"


async def test_each_change_of_an_alarm_is_published_and_audited(api: Api, cast: Cast) -> None:
    oximeter = cast.devices["peters_oximeter"]
    carol = cast.tokens["carol_clinician"]
    t = now()
    await deliver(api, oximeter, reading(t, heart_rate=150))
    [alarm] = await api.alerts(carol)
    assert (await silence(api, carol, alarm["id"], 60)).status_code == 200
    assert (await acknowledge(api, carol, alarm["id"])).status_code == 200
    await deliver(api, oximeter, reading(t + SECOND, heart_rate=70))

    changes = {}
    for change in ("raised", "silenced", "acknowledged", "resolved"):
        events = [
            e for e in await published(api, f"alert.{change}") if e["alert_id"] == alarm["id"]
        ]
        assert len(events) == 1, (change, events)
        changes[change] = events[0]
    raised = changes["raised"]
    assert (raised["rule"], raised["priority"], raised["state"]) == (
        "heart_rate_high",
        "high",
        "active",
    )
    assert (raised["patient_id"], raised["device_id"]) == (
        cast.patients["peter"]["id"],
        oximeter["id"],
    )
    assert raised["value"] == 150 and raised["actor_id"] is None
    assert changes["silenced"]["silenced_until"] is not None
    assert changes["silenced"]["actor_id"] == cast.user_ids["carol_clinician"]
    assert changes["acknowledged"]["state"] == "acknowledged"
    assert changes["acknowledged"]["actor_id"] == cast.user_ids["carol_clinician"]
    assert changes["resolved"]["state"] == "resolved"
    assert changes["resolved"]["condition_active"] is False

    for change in ("raised", "silenced", "acknowledged", "resolved"):
        [record] = [
            r for r in await audited(api, f"alert.{change}") if r["object_id"] == alarm["id"]
        ]
        assert record["object_type"] == "alert"
        assert record["patient_id"] == cast.patients["peter"]["id"]
    [by_carol] = [
        r for r in await audited(api, "alert.acknowledged") if r["object_id"] == alarm["id"]
    ]
    assert by_carol["actor_id"] == cast.user_ids["carol_clinician"]
