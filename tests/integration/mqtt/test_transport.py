"""Readings over MQTT: stored before they are acknowledged, only from the device itself."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from medcloud.config import Settings
from medcloud.ingest.intake import Intake
from medcloud.ingest.mqtt import consume_mqtt
from medcloud.platform.metrics import Metrics
from tests.support.client import Api, bearer, eventually, now, reading
from tests.support.mosquitto import Broker, mqtt_device


async def quarantine(api: Api, token: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get("/api/v1/quarantine", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_registered_device_publishes_readings_that_are_stored_then_acknowledged(
    api: Api, alice: str, broker: Broker
) -> None:
    device = await api.register_device(alice)
    async with mqtt_device(broker, device["id"], device["token"]) as oximeter:
        await oximeter.publish(reading(heart_rate=150, spo2=97), msg_id="m-1")
        ack = await oximeter.ack("m-1")

    # The acknowledgement comes after the commit: the readings are there when it arrives.
    assert ack == {"msg_id": "m-1", "status": "stored", "accepted": 2, "stored": 2, "duplicates": 0}
    items = await api.readings(alice, device["id"])
    assert sorted((i["type"], i["value"]) for i in items) == [("heart_rate", 150), ("spo2", 97)]
    [alert] = await api.wait_for_alerts(alice, 1)
    assert alert["value"] == 150
    metrics = api.app.state.runtime.metrics
    assert counted(metrics, "readings_ingested_total", transport="mqtt") == 2
    assert counted(metrics, "mqtt_messages_total", outcome="stored") == 1


async def test_a_device_without_mqtt_v5_names_its_message_in_the_payload(
    api: Api, alice: str, broker: Broker
) -> None:
    device = await api.register_device(alice)
    start = now() - dt.timedelta(minutes=1)
    batch = [reading(start + dt.timedelta(seconds=i), heart_rate=60 + i) for i in range(5)]
    async with mqtt_device(broker, device["id"], device["token"]) as monitor:
        await monitor.publish({"msg_id": "batch-7", "readings": batch})
        ack = await monitor.ack("batch-7")

    assert ack["status"] == "stored" and ack["stored"] == 5
    assert len(await api.readings(alice, device["id"])) == 5


async def test_a_reading_sent_twice_is_stored_once(api: Api, alice: str, broker: Broker) -> None:
    device = await api.register_device(alice)
    sample = reading(now() - dt.timedelta(seconds=5), heart_rate=72)
    async with mqtt_device(broker, device["id"], device["token"]) as oximeter:
        await oximeter.publish(sample, msg_id="first")
        first = await oximeter.ack("first")
        await oximeter.publish(sample, msg_id="again")
        again = await oximeter.ack("again")

    assert (first["stored"], first["duplicates"]) == (1, 0)
    assert (again["stored"], again["duplicates"]) == (0, 1)
    assert len(await api.readings(alice, device["id"])) == 1


async def test_a_bad_payload_is_quarantined_and_refused_in_the_ack(
    api: Api, alice: str, broker: Broker
) -> None:
    device = await api.register_device(alice)
    async with mqtt_device(broker, device["id"], device["token"]) as oximeter:
        await oximeter.publish(b"{not json", msg_id="garbled")
        await oximeter.publish(reading(heart_rate=900), msg_id="impossible")
        garbled = await oximeter.ack("garbled")
        impossible = await oximeter.ack("impossible")

    assert garbled["status"] == "refused"
    assert [e["field"] for e in garbled["errors"]] == ["body"]
    assert impossible["status"] == "refused"
    assert impossible["errors"][0]["field"] == "measurements.heart_rate"
    assert "outside the possible range" in impossible["errors"][0]["message"]
    kept = await quarantine(api, alice, device_id=device["id"])
    assert {k["transport"] for k in kept} == {"mqtt"}
    assert {k["field"] for k in kept} == {"body", "measurements.heart_rate"}
    assert await api.readings(alice, device["id"]) == []
    metrics = api.app.state.runtime.metrics
    assert counted(metrics, "readings_rejected_total", transport="mqtt", reason="malformed") == 1
    assert counted(metrics, "readings_rejected_total", transport="mqtt", reason="out_of_range") == 1


async def test_a_device_cannot_publish_on_another_devices_topic(
    api: Api, alice: str, broker: Broker
) -> None:
    peter = await api.register_device(alice, "PO-1")
    olive = await api.register_device(alice, "PO-2")
    forged = reading(heart_rate=150)
    try:
        async with mqtt_device(broker, peter["id"], peter["token"]) as mallory:
            await mallory.publish(forged, msg_id="forged", topic=f"devices/{olive['id']}/telemetry")
            await mallory.publish(reading(heart_rate=70), msg_id="after")
            await mallory.ack("after")
    except aiomqtt.MqttError:
        pass  # Mosquitto 2.0 answers "not authorized" and closes the connection

    async with mqtt_device(broker, peter["id"], peter["token"]) as peters_oximeter:
        # Nor may it listen to another device's acknowledgements.
        [granted] = await peters_oximeter.client.subscribe(f"devices/{olive['id']}/ack", qos=1)
        assert isinstance(granted, ReasonCode) and granted.is_failure
        await peters_oximeter.publish(reading(heart_rate=71), msg_id="own")
        assert (await peters_oximeter.ack("own"))["status"] == "stored"
        assert "forged" not in peters_oximeter.acks

    assert await api.readings(alice, olive["id"]) == []
    assert 150 not in [i["value"] for i in await api.readings(alice, peter["id"])]
    assert await api.alerts(alice) == []


async def test_a_device_cannot_connect_with_a_wrong_revoked_or_replaced_token(
    api: Api, alice: str, broker: Broker
) -> None:
    device = await api.register_device(alice)

    async def connects(token: str) -> bool:
        try:
            async with mqtt_device(broker, device["id"], token):
                return True
        except aiomqtt.MqttError:
            return False

    assert await connects(device["token"])
    assert not await connects("mcd_wrong-token")

    rotated = await api.http.post(
        f"/api/v1/devices/{device['id']}/credentials/rotate",
        json={"grace_seconds": 3600},
        headers=bearer(alice),
    )
    assert rotated.status_code == 201, rotated.text
    new_token = rotated.json()["token"]
    # HTTP keeps the old token for the grace period; the broker holds one password per client.
    assert not await connects(device["token"])
    assert await connects(new_token)

    revoked = await api.http.post(
        f"/api/v1/devices/{device['id']}/credentials/revoke", headers=bearer(alice)
    )
    assert revoked.status_code == 200, revoked.text
    assert not await connects(new_token)

    again = await api.http.post(
        f"/api/v1/devices/{device['id']}/credentials/rotate", headers=bearer(alice)
    )
    assert again.status_code == 201, again.text
    assert await connects(again.json()["token"])

    gone = await api.http.patch(
        f"/api/v1/devices/{device['id']}", json={"decommissioned": True}, headers=bearer(alice)
    )
    assert gone.status_code == 200, gone.text
    assert not await connects(again.json()["token"])


async def test_a_backlogged_store_holds_messages_unacknowledged_until_it_takes_them(
    mqtt_settings: Settings, broker: Broker
) -> None:
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
    from tests.integration.mqtt.conftest import subscribed
    from tests.support.client import running

    tight = mqtt_settings.model_copy(
        update={
            "ingest": mqtt_settings.ingest.model_copy(
                update={"writer_max_pending_rows": 1, "writer_batch_ms": 50.0}
            )
        }
    )
    async with running(tight) as api:
        assert await eventually(lambda: subscribed(api), timeout=30)
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        device = await api.register_device(alice)
        start = now() - dt.timedelta(minutes=5)
        async with mqtt_device(broker, device["id"], device["token"]) as monitor:
            for i in range(60):
                sample = reading(start + dt.timedelta(seconds=i), heart_rate=60 + i % 30)
                await monitor.publish(sample, msg_id=f"m-{i}")
            acks = [await monitor.ack(f"m-{i}", timeout=30) for i in range(60)]

        assert {a["status"] for a in acks} == {"stored"}
        assert len(await api.readings(alice, device["id"], limit=100)) == 60
        metrics = api.app.state.runtime.metrics
        # The writer refused while busy; those messages waited, unacknowledged, and got in.
        assert counted(metrics, "mqtt_messages_total", outcome="retried") > 0
        assert counted(metrics, "readings_rejected_total", transport="mqtt", reason="backpressure")


async def test_two_workers_in_the_shared_group_both_take_work(
    api: Api, alice: str, broker: Broker
) -> None:
    runtime = api.app.state.runtime
    second = Metrics()
    stop = asyncio.Event()
    worker_b = asyncio.create_task(
        consume_mqtt(
            settings=runtime.settings,
            intake=runtime.services.require(Intake),
            metrics=second,
            stop=stop,
            client_id="medcloud-ingest-b",
        )
    )
    try:
        assert await eventually(
            lambda: asyncio.sleep(0, counted(second, "mqtt_subscriber_connected") == 1)
        )
        devices = [await api.register_device(alice, f"PO-{n}") for n in range(4)]
        start = now() - dt.timedelta(minutes=5)
        for device in devices:
            async with mqtt_device(broker, device["id"], device["token"]) as monitor:
                for i in range(25):
                    sample = reading(start + dt.timedelta(seconds=i), heart_rate=70)
                    await monitor.publish(sample, msg_id=f"m-{i}")
                for i in range(25):
                    assert (await monitor.ack(f"m-{i}"))["status"] == "stored"
    finally:
        stop.set()
        await worker_b

    first = runtime.metrics
    taken_a = counted(first, "mqtt_messages_total", outcome="stored")
    taken_b = counted(second, "mqtt_messages_total", outcome="stored")
    assert taken_a + taken_b == 100
    assert taken_a > 0 and taken_b > 0
    for device in devices:
        assert len(await api.readings(alice, device["id"], limit=100)) == 25


async def test_the_subscriber_reconnects_when_the_broker_comes_back(
    api: Api, alice: str, broker: Broker
) -> None:
    from tests.integration.mqtt.conftest import subscribed

    device = await api.register_device(alice)
    broker.stop()
    assert await eventually(lambda: _not(subscribed(api)), timeout=10)
    broker.start()
    assert await eventually(lambda: subscribed(api), timeout=30), broker.log()
    async with mqtt_device(broker, device["id"], device["token"]) as oximeter:
        await oximeter.publish(reading(heart_rate=80), msg_id="after")
        assert (await oximeter.ack("after"))["status"] == "stored"


async def _not(probe: Any) -> bool:
    return not await probe


@pytest.mark.parametrize("backend", ["embedded"])
async def test_registration_answers_503_when_the_broker_cannot_provision_the_device(
    backend: str, settings: Settings
) -> None:
    from medcloud.config import MqttSettings
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
    from tests.support.client import running
    from tests.support.processes import free_port

    nowhere = MqttSettings(
        url=f"mqtt://medcloud-ingest:pw@127.0.0.1:{free_port()}",
        admin_username="admin",
        admin_password="pw",
        admin_timeout_seconds=1.0,
        subscribe=False,
    )
    async with running(settings.model_copy(update={"mqtt": nowhere})) as api:
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        response = await api.http.post(
            "/api/v1/devices",
            json={"serial_number": "PO-9", "model": "PulseOx 2", "manufacturer": "Acme"},
            headers=bearer(alice),
        )
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
        listed = await api.http.get("/api/v1/devices", headers=bearer(alice))
        assert listed.json()["items"] == []


async def test_readings_published_before_any_worker_subscribed_are_stored_when_one_comes(
    settings: Settings, broker: Broker
) -> None:
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
    from tests.support.client import running

    # An API process alone provisions the device; no worker has ever subscribed.
    workers = ["medcloud-ingest"]
    api_only = settings.model_copy(
        update={"mqtt": broker.settings(subscribe=False, worker_client_ids=workers)}
    )
    async with running(api_only) as api:
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        device = await api.register_device(alice)
        start = now() - dt.timedelta(minutes=1)
        async with mqtt_device(broker, device["id"], device["token"]) as monitor:
            for i in range(3):
                await monitor.publish(reading(start + dt.timedelta(seconds=i), heart_rate=70 + i))

        # The first worker's session was waiting, subscribed: it holds all three.
        runtime = api.app.state.runtime
        stop = asyncio.Event()
        worker = asyncio.create_task(
            consume_mqtt(
                settings=runtime.settings.model_copy(
                    update={"mqtt": broker.settings(subscribe=True)}
                ),
                intake=runtime.services.require(Intake),
                metrics=Metrics(),
                stop=stop,
            )
        )
        try:
            assert await eventually(lambda: _count(api, alice, device["id"], 3), timeout=30), (
                broker.log()
            )
        finally:
            stop.set()
            await worker
        items = await api.readings(alice, device["id"])
        assert sorted(i["value"] for i in items) == [70, 71, 72]


async def _count(api: Api, token: str, device_id: str, expected: int) -> bool:
    return len(await api.readings(token, device_id)) == expected
