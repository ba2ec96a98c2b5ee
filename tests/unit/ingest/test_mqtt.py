"""The MQTT subscriber without a broker: message ids, answers, the device cache, unknown devices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import aiomqtt
import orjson

from medcloud.config import MqttSettings, Settings
from medcloud.ingest.intake import Intake
from medcloud.ingest.mqtt import take_telemetry
from medcloud.ingest.mqtt_messages import ack_body, split_msg_id
from medcloud.ingest.schemas import IngestResult
from medcloud.platform.cache import MemoryCache
from medcloud.platform.directory import CampaignCard, DeviceCard, DeviceQuery, DeviceRef
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.metrics import Metrics
from medcloud.platform.mqtt_workers import worker_acls
from medcloud.platform.uow import UnitOfWork


def test_a_msg_id_in_the_payload_is_taken_out_before_decoding() -> None:
    payload = orjson.dumps({"msg_id": 42, "timestamp": "2026-11-30T12:00:00Z", "measurements": {}})
    rest, msg_id = split_msg_id(payload)
    assert msg_id == "42"
    assert orjson.loads(rest) == {"timestamp": "2026-11-30T12:00:00Z", "measurements": {}}


def test_a_payload_without_msg_id_or_not_json_is_left_as_it_is() -> None:
    plain = b'{"timestamp": "2026-11-30T12:00:00Z", "measurements": {"spo2": 97}}'
    assert split_msg_id(plain) == (plain, None)
    garbled = b'{"msg_id": 1, oops'
    assert split_msg_id(garbled) == (garbled, None)
    listed = b'[{"msg_id": 1}]'
    assert split_msg_id(listed) == (listed, None)


def test_the_answer_names_what_was_stored_or_why_it_was_refused() -> None:
    stored = IngestResult(device_id="d", accepted=3, stored=2, duplicates=1)
    assert ack_body("m-1", stored, None) == {
        "msg_id": "m-1",
        "status": "stored",
        "accepted": 3,
        "stored": 2,
        "duplicates": 1,
    }
    refusal = Invalid("1 problem", errors=[FieldError("measurements.spo2", "outside the range")])
    assert ack_body(None, None, refusal) == {
        "msg_id": None,
        "status": "refused",
        "detail": "1 problem",
        "errors": [{"field": "measurements.spo2", "message": "outside the range"}],
    }


def test_workers_may_take_the_groups_telemetry_and_answer_devices_only() -> None:
    acls = {(a["acltype"], a["topic"]) for a in worker_acls("medcloud")}
    assert acls == {
        ("subscribePattern", "$share/medcloud/devices/+/telemetry"),
        ("publishClientReceive", "devices/+/telemetry"),
        ("publishClientSend", "devices/+/ack"),
    }


class CountingDirectory:
    def __init__(self, known: dict[str, DeviceRef]) -> None:
        self.known = known
        self.lookups = 0

    async def get(self, device_id: str) -> DeviceRef | None:
        self.lookups += 1
        return self.known.get(device_id)

    async def by_token_hash(self, token_hash: str) -> DeviceRef | None:  # noqa: ARG002
        return None

    async def patients_at(
        self,
        device_id: str,  # noqa: ARG002
        times: Sequence[dt.datetime],
    ) -> list[str | None]:
        return [None for _ in times]

    async def close(self) -> None:
        pass

    async def card(self, device_id: str) -> DeviceCard | None:  # noqa: ARG002
        return None

    async def search(
        self,
        organisation_id: str,  # noqa: ARG002
        query: DeviceQuery,  # noqa: ARG002
        *,
        limit: int,  # noqa: ARG002
        after: tuple[dt.datetime, str] | None,  # noqa: ARG002
    ) -> list[DeviceCard]:
        return []

    async def campaigns(
        self,
        organisation_id: str,  # noqa: ARG002
        start: dt.datetime,  # noqa: ARG002
        end: dt.datetime,  # noqa: ARG002
    ) -> list[CampaignCard]:
        return []


async def test_a_message_of_an_unknown_or_decommissioned_device_is_counted_and_acknowledged() -> (
    None
):
    settings = Settings(mqtt=MqttSettings(url="mqtt://worker:pw@127.0.0.1:1"))
    retired = DeviceRef("retired", "org", None, decommissioned=True)
    metrics = Metrics()

    def no_uow() -> UnitOfWork:
        raise AssertionError("nothing is stored")

    devices = CountingDirectory({"retired": retired})
    intake = Intake(settings, metrics, devices, MemoryCache(), no_uow)
    for mid, device_id in enumerate(("retired", "ghost"), start=1):
        message = aiomqtt.Message(f"devices/{device_id}/telemetry", b"{}", 1, False, mid, None)
        handled = await take_telemetry(intake, message)
        # Acknowledged (the subscriber acknowledges whatever is handled), nobody to answer.
        assert (handled.outcome, handled.answer) == ("unknown_device", None)

    rejected = {"transport": "mqtt", "reason": "unknown_device"}
    assert metrics.registry.get_sample_value("readings_rejected_total", rejected) == 2
