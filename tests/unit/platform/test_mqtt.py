"""The MQTT wire contract: broker URLs, topics, and the dynamic-security plugin's answers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from medcloud.platform.dynsec import BrokerUnavailable, _answers, failed, require
from medcloud.platform.mqtt import (
    BrokerAddress,
    Paho,
    ack_topic,
    device_of,
    properties,
    share_property_tables,
    shared_telemetry,
)


def test_a_broker_url_names_host_port_tls_and_credentials() -> None:
    plain = BrokerAddress.from_url("mqtt://medcloud-ingest:s%40cret@broker.example:1884")
    assert (plain.host, plain.port, plain.tls) == ("broker.example", 1884, False)
    assert (plain.username, plain.password) == ("medcloud-ingest", "s@cret")
    assert "s@cret" not in repr(plain)
    secure = BrokerAddress.from_url("mqtts://broker.example")
    assert (secure.port, secure.tls, secure.username) == (8883, True, None)
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerAddress.from_url("http://broker.example")


def test_only_a_telemetry_topic_names_a_device() -> None:
    assert device_of("devices/abc/telemetry") == "abc"
    assert device_of("devices/abc/ack") is None
    assert device_of("devices//telemetry") is None
    assert device_of("devices/a/b/telemetry") is None
    assert ack_topic("abc") == "devices/abc/ack"
    assert shared_telemetry("medcloud") == "$share/medcloud/devices/+/telemetry"


def test_only_answers_tagged_with_the_requests_id_are_taken() -> None:
    ours = orjson.dumps({"responses": [{"command": "createClient", "correlationData": "t1:0"}]})
    theirs = orjson.dumps({"responses": [{"command": "deleteClient", "correlationData": "t2:0"}]})
    assert _answers(ours, "t1") == [{"command": "createClient", "correlationData": "t1:0"}]
    assert _answers(theirs, "t1") is None
    assert _answers(b"not json", "t1") is None
    assert _answers(b"[]", "t1") is None


def test_a_refused_command_raises_unless_its_error_is_expected() -> None:
    exists = {"command": "createClient", "error": "Client already exists"}
    assert failed(exists, "already exists")
    require(exists, unless="already exists")
    require({"command": "createClient"})
    with pytest.raises(BrokerUnavailable) as raised:
        require(exists)
    assert raised.value.permanent and raised.value.status == 503


def test_properties_sharing_their_tables_still_pack_unpack_and_check_as_paho_does() -> None:
    from paho.mqtt.exception import MQTTException
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    share_property_tables()
    share_property_tables()  # a second call changes nothing
    one, two = properties("PUBLISH"), properties("PUBLISH")
    assert one.names is two.names
    one.CorrelationData = b"42"
    one.UserProperty = ("content-encoding", "gzip")
    assert not hasattr(two, "CorrelationData")
    read: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    read.unpack(one.pack())  # type: ignore[no-untyped-call]
    assert read.CorrelationData == b"42"
    assert read.UserProperty == [("content-encoding", "gzip")]
    with pytest.raises(MQTTException):
        properties("PUBLISH").NoSuchProperty = 1
    with pytest.raises(MQTTException):
        properties("PUBLISH").SessionExpiryInterval = 60  # a CONNECT property


async def test_the_paho_client_inside_aiomqtt_is_where_the_fence_expects_it() -> None:
    """Fails when an aiomqtt or paho upgrade moves what medcloud reaches past their API for."""
    import inspect

    import aiomqtt
    import paho.mqtt.client as paho

    client = BrokerAddress.from_url("mqtt://127.0.0.1:1").client(identifier="fence")
    Paho(client).acknowledge_manually()
    inner = client._client
    assert inner._manual_ack is True
    assert list(inspect.signature(paho.Client.ack).parameters) == ["self", "mid", "qos"]
    publish = inspect.signature(paho.Client.publish).parameters
    assert {"topic", "payload", "qos", "properties"} <= set(publish)
    message = aiomqtt.Message("devices/d/telemetry", b"{}", 1, False, 7, None)
    assert (message.mid, message.qos) == (7, 1)
    with pytest.raises(RuntimeError, match="aiomqtt no longer keeps"):
        Paho(SimpleNamespace())  # type: ignore[arg-type]
