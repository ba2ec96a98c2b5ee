"""Device credentials on the MQTT broker, kept in step with the registry.

Every registered device is a broker client whose username is its id and whose password is its
current token, with a role of its own (`medcloud-device-{id}`) that allows exactly: publishing
on `devices/{id}/telemetry`, subscribing to and receiving `devices/{id}/ack`. A role per device,
because Mosquitto 2.0's dynamic-security plugin does not substitute `%u` in ACL topics (checked
on 2.0.11: a `devices/%u/telemetry` ACL refuses the device its own topic). These ACLs are what
lets the ingest subscriber trust the device id in a topic.

The broker keeps one password per client, so a rotated token replaces the old one over MQTT at
once (HTTP honours the grace period); revocation disables the client, decommissioning deletes it.
"""

from __future__ import annotations

from typing import Protocol

from medcloud.config import MqttSettings, Settings
from medcloud.platform.dynsec import (
    Acl,
    BrokerUnavailable,
    DynamicSecurity,
    dynamic_security,
    failed,
    require,
)
from medcloud.platform.mqtt import ack_topic, telemetry_topic
from medcloud.platform.mqtt_workers import provision_workers

__all__ = ["NO_BROKER", "BrokerAccess", "BrokerUnavailable", "DeviceCredentials", "broker_access"]


def device_role(device_id: str) -> str:
    """Return the name of the broker role that holds one device's ACLs."""
    return f"medcloud-device-{device_id}"


def device_acls(device_id: str) -> list[Acl]:
    """What a device may do on the broker: send its readings, hear its acknowledgements."""
    telemetry, ack = telemetry_topic(device_id), ack_topic(device_id)
    return [
        {"acltype": "publishClientSend", "topic": telemetry, "allow": True},
        {"acltype": "subscribeLiteral", "topic": ack, "allow": True},
        {"acltype": "publishClientReceive", "topic": ack, "allow": True},
    ]


class BrokerAccess(Protocol):
    """Keep a device's broker credentials in step with its registration.

    Each method raises BrokerUnavailable (a 503) when the broker does not confirm the change.
    """

    async def grant(self, device_id: str, token: str) -> None:
        """Let the device connect with `token`, publish its readings and hear its acks."""
        ...

    async def change_password(self, device_id: str, token: str) -> None:
        """Make `token` the device's only broker password, from now on, and enable it."""
        ...

    async def suspend(self, device_id: str) -> None:
        """Refuse the device's connections (ending its current one) until a new password."""
        ...

    async def remove(self, device_id: str) -> None:
        """Delete the device's broker client and role."""
        ...


class NoBroker:
    """MQTT is not configured: devices have no broker credentials to keep."""

    async def grant(self, device_id: str, token: str) -> None:
        """Do nothing."""

    async def change_password(self, device_id: str, token: str) -> None:
        """Do nothing."""

    async def suspend(self, device_id: str) -> None:
        """Do nothing."""

    async def remove(self, device_id: str) -> None:
        """Do nothing."""


NO_BROKER = NoBroker()


def broker_access(settings: Settings) -> BrokerAccess:
    """Return the broker access the settings configure (none without MQTT admin credentials)."""
    admin = dynamic_security(settings)
    return NO_BROKER if admin is None else DeviceCredentials(admin, settings.mqtt)


class DeviceCredentials:
    """Device clients and roles, through the dynamic-security plugin."""

    def __init__(self, admin: DynamicSecurity, settings: MqttSettings) -> None:
        self._admin = admin
        self._settings = settings
        self._workers_ready = False

    async def grant(self, device_id: str, token: str) -> None:
        """Create the device's role and client (or, if a leftover exists, reset it).

        The workers' access and waiting sessions come first (once per process), so that what
        the device publishes as soon as it can connect has a subscription to land in.
        """
        if not self._workers_ready:
            await provision_workers(self._admin, self._settings)
            self._workers_ready = True
        role = device_role(device_id)
        created_role, created_client = await self._admin.execute(
            [
                {"command": "createRole", "rolename": role, "acls": device_acls(device_id)},
                {
                    "command": "createClient",
                    "username": device_id,
                    "password": token,
                    "roles": [{"rolename": role}],
                },
            ]
        )
        require(created_role, unless="already exists")
        if not failed(created_client, "already exists"):
            require(created_client)
            return
        # A leftover of an earlier attempt: make it this registration's client.
        await self._set_password(device_id, token)
        await self._admin.ensure_client_role(device_id, role)

    async def change_password(self, device_id: str, token: str) -> None:
        """Set the new password and enable the client; provision a device that has none yet."""
        if not await self._set_password(device_id, token):
            # Registered while MQTT was not configured: a new token is the moment to grant it.
            await self.grant(device_id, token)

    async def suspend(self, device_id: str) -> None:
        """Disable the client; the plugin disconnects it if it is connected."""
        (disabled,) = await self._admin.execute(
            [{"command": "disableClient", "username": device_id}]
        )
        require(disabled, unless="not found")

    async def remove(self, device_id: str) -> None:
        """Delete the client (disconnecting it) and its role."""
        client, role = await self._admin.execute(
            [
                {"command": "deleteClient", "username": device_id},
                {"command": "deleteRole", "rolename": device_role(device_id)},
            ]
        )
        require(client, unless="not found")
        require(role, unless="not found")

    async def _set_password(self, device_id: str, token: str) -> bool:
        """Set the client's password and enable it; False if the device has no client."""
        changed, enabled = await self._admin.execute(
            [
                {"command": "setClientPassword", "username": device_id, "password": token},
                {"command": "enableClient", "username": device_id},
            ]
        )
        if failed(changed, "not found"):
            return False
        require(changed)
        require(enabled)
        return True
