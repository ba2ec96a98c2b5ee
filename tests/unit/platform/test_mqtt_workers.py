"""The workers' broker access, and which sessions are made to wait for them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from medcloud.config import MqttSettings
from medcloud.platform import mqtt_workers
from medcloud.platform.mqtt_workers import provision_workers, waiting_sessions

URL = "mqtt://medcloud-ingest:secret@broker:1883"
ROLE = "ensureRole medcloud-ingest 3"


class FakeAdmin:
    """Answers dynamic-security commands; the worker client exists or not."""

    def __init__(self, *, client_exists: bool) -> None:
        self.client_exists = client_exists
        self.commands: list[str] = []

    async def execute(self, commands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        answers = []
        for command in commands:
            self.commands.append(command["command"])
            if command["command"] == "createClient" and self.client_exists:
                answers.append({"command": "createClient", "error": "Client already exists"})
            else:
                answers.append({"command": command["command"]})
        return answers

    async def ensure_role(self, rolename: str, acls: Sequence[Mapping[str, Any]]) -> None:
        self.commands.append(f"ensureRole {rolename} {len(acls)}")

    async def ensure_client_role(self, username: str, rolename: str) -> None:
        self.commands.append(f"ensureClientRole {username} {rolename}")


@pytest.fixture
def reserved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []

    async def reserve(settings: MqttSettings, topic: str, client_id: str) -> None:
        assert topic == "$share/medcloud/devices/+/telemetry"
        made.append(client_id)

    monkeypatch.setattr(mqtt_workers, "reserve_session", reserve)
    return made


async def test_a_new_worker_client_gets_the_workers_sessions_made(reserved: list[str]) -> None:
    settings = MqttSettings(url=URL, worker_client_ids=["medcloud-ingest-0", "medcloud-ingest-1"])
    admin = FakeAdmin(client_exists=False)
    await provision_workers(admin, settings)  # type: ignore[arg-type]
    assert reserved == ["medcloud-ingest-0", "medcloud-ingest-1"]
    assert admin.commands == [ROLE, "createClient"]


async def test_an_existing_worker_client_never_has_a_session_taken_over(
    reserved: list[str],
) -> None:
    settings = MqttSettings(url=URL, worker_client_ids=["medcloud-ingest-0"])
    admin = FakeAdmin(client_exists=True)
    await provision_workers(admin, settings)  # type: ignore[arg-type]
    assert reserved == []
    assert admin.commands == [
        ROLE,
        "createClient",
        "ensureClientRole medcloud-ingest medcloud-ingest",
    ]


async def test_without_worker_credentials_nothing_is_provisioned(reserved: list[str]) -> None:
    admin = FakeAdmin(client_exists=False)
    await provision_workers(admin, MqttSettings(url="mqtt://broker:1883"))  # type: ignore[arg-type]
    assert reserved == [] and admin.commands == []


def test_only_ids_a_worker_will_use_get_a_waiting_session() -> None:
    # An API process that does not subscribe makes none of its own: an unused member of the
    # shared group would keep a share of the telemetry until its session expired.
    assert waiting_sessions(MqttSettings(url=URL, subscribe=False)) == []
    assert waiting_sessions(MqttSettings(url=URL, client_id="w-0")) == ["w-0"]
    configured = MqttSettings(url=URL, subscribe=False, worker_client_ids=["w-0", "w-1"])
    assert waiting_sessions(configured) == ["w-0", "w-1"]
