"""Mosquitto's dynamic-security plugin, driven as its admin client: broker clients and roles.

Commands go as JSON to `$CONTROL/dynamic-security/v1`; the plugin answers on `…/v1/response`
to every admin subscribed there, so each request tags its commands with a correlation id and
picks out its own answers. One short connection per request: changes are rare (a registration,
a rotation, a worker starting), and a connection of its own needs no upkeep between them.

Two contexts use it: devices keeps each device's client and role, ingest its workers' own.
Notes from Mosquitto 2.0.11: ACL topics take no `%u`/`%c` substitution, so a role per device;
adding a role a client already holds answers "Internal error", so roles are looked up first;
every successful change rewrites the plugin's JSON file.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog

from medcloud.config import Settings
from medcloud.platform.errors import Unavailable
from medcloud.platform.mqtt import BrokerAddress

log = structlog.get_logger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
RETRY_AFTER_SECONDS = 5

Acl = dict[str, Any]
"""One ACL entry: `{"acltype": "publishClientSend", "topic": "…", "allow": True}`."""


class BrokerUnavailable(Unavailable):
    """The broker did not confirm a change (answered as 503 where a request asked for it).

    `permanent` tells whether trying again can help (an unreachable broker) or not (the broker
    refused the admin client, or the command).
    """

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.permanent = permanent


def dynamic_security(settings: Settings) -> DynamicSecurity | None:
    """Return the admin client the settings configure, or None without MQTT admin credentials."""
    mqtt = settings.mqtt
    if not mqtt.url or not mqtt.admin_username:
        return None
    password = mqtt.admin_password.get_secret_value() if mqtt.admin_password else None
    admin = BrokerAddress.from_url(mqtt.url).as_user(mqtt.admin_username, password)
    return DynamicSecurity(admin, timeout=mqtt.admin_timeout_seconds)


class DynamicSecurity:
    """Send dynamic-security commands as the plugin's admin client."""

    def __init__(self, admin: BrokerAddress, *, timeout: float) -> None:
        self._admin = admin
        self._timeout = timeout

    async def execute(self, commands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Send `commands` in one request; return the plugin's answer to each, in order.

        An answer with an `error` is returned, not raised: whether it matters depends on the
        command. Raise BrokerUnavailable when the broker cannot be reached or does not answer.
        """
        import aiomqtt
        from aiomqtt.exceptions import MqttConnectError

        tag = uuid.uuid4().hex
        tagged = [
            {**command, "correlationData": f"{tag}:{i}"} for i, command in enumerate(commands)
        ]
        client = self._admin.client(identifier=f"medcloud-admin-{tag[:16]}", timeout=self._timeout)
        try:
            async with asyncio.timeout(self._timeout), client:
                await client.subscribe(RESPONSE_TOPIC, qos=1)
                await client.publish(CONTROL_TOPIC, orjson.dumps({"commands": tagged}), qos=1)
                async for message in client.messages:
                    answers = _answers(message.payload, tag)
                    if answers is not None:
                        return answers
        except MqttConnectError as exc:
            # Refused credentials will not pass by trying again.
            refused = "the MQTT broker refused the admin client"
            raise BrokerUnavailable(refused, permanent=True) from exc
        except (TimeoutError, aiomqtt.MqttError, OSError) as exc:
            raise BrokerUnavailable("the MQTT broker did not answer", permanent=False) from exc
        raise BrokerUnavailable("the MQTT broker closed the connection", permanent=False)

    async def ensure_role(self, rolename: str, acls: Sequence[Acl]) -> None:
        """Create the role with `acls`, or add to an existing one those it lacks."""
        (created,) = await self.execute(
            [{"command": "createRole", "rolename": rolename, "acls": list(acls)}]
        )
        if not failed(created, "already exists"):
            require(created)
            return
        answers = await self.execute(
            [{"command": "addRoleACL", "rolename": rolename, **acl} for acl in acls]
        )
        for answer in answers:
            require(answer, unless="already exists")

    async def ensure_client_role(self, username: str, rolename: str) -> None:
        """Give an existing client the role unless it holds it already."""
        (found,) = await self.execute([{"command": "getClient", "username": username}])
        require(found)
        held = (found.get("data") or {}).get("client", {}).get("roles") or []
        if any(role.get("rolename") == rolename for role in held):
            return
        (added,) = await self.execute(
            [{"command": "addClientRole", "username": username, "rolename": rolename}]
        )
        require(added)


def _answers(payload: Any, tag: str) -> list[dict[str, Any]] | None:
    """The answers of the request tagged `tag` in a response message, or None if not ours."""
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
        responses = orjson.loads(payload).get("responses")
        if isinstance(responses, list) and responses:
            first = str(responses[0].get("correlationData", ""))
            if first.startswith(f"{tag}:"):
                return [dict(answer) for answer in responses]
    return None


def failed(answer: Mapping[str, Any], fragment: str) -> bool:
    """Tell whether the plugin refused a command with an error containing `fragment`."""
    return fragment in str(answer.get("error", ""))


def require(answer: Mapping[str, Any], *, unless: str | None = None) -> None:
    """Raise BrokerUnavailable (permanent) if the command failed, except for `unless` errors."""
    error = answer.get("error")
    if error is None or (unless is not None and unless in str(error)):
        return
    log.error("mqtt.dynsec.refused", command=answer.get("command"), error=str(error))
    raise BrokerUnavailable(f"the MQTT broker refused {answer.get('command')}", permanent=True)
