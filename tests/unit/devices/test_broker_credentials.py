"""What a device may do on the MQTT broker."""

from __future__ import annotations

from medcloud.devices.mqtt import device_acls, device_role


def test_a_device_may_send_on_its_own_topic_and_hear_its_own_acks_only() -> None:
    assert device_role("abc") == "medcloud-device-abc"
    assert {(a["acltype"], a["topic"]) for a in device_acls("abc")} == {
        ("publishClientSend", "devices/abc/telemetry"),
        ("subscribeLiteral", "devices/abc/ack"),
        ("publishClientReceive", "devices/abc/ack"),
    }
