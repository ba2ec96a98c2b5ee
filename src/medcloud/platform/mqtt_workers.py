"""The ingest workers' place on the broker: their role and client, and sessions that wait for them.

A device can publish as soon as its credentials exist, and Mosquitto acknowledges a QoS 1
message to the device even when no subscription matches it, then drops it. So the workers'
shared subscription has to exist before the first device's credentials do, whether or not a
worker has started yet. Whoever provisions the broker (the workers themselves, and the process
that grants devices their credentials) therefore creates the workers' role and client, and the
first time, when that client is new, their persistent sessions: subscribed, then left waiting.
The broker queues telemetry in them until the workers connect under those ids and take it.

Only a new client gets sessions made for it: no worker can have connected with credentials that
did not exist, so making its session never takes one over from a running worker.
"""

from __future__ import annotations

from medcloud.config import MqttSettings
from medcloud.platform.dynsec import Acl, DynamicSecurity, failed, require
from medcloud.platform.mqtt import ACK_FILTER, TELEMETRY_FILTER, BrokerAddress, shared_telemetry
from medcloud.platform.subscriber import reserve_session

INGEST_ROLE = "medcloud-ingest"


def worker_acls(share_group: str) -> list[Acl]:
    """What the ingest workers may do on the broker: take telemetry, answer devices."""
    return [
        {"acltype": "subscribePattern", "topic": shared_telemetry(share_group), "allow": True},
        {"acltype": "publishClientReceive", "topic": TELEMETRY_FILTER, "allow": True},
        {"acltype": "publishClientSend", "topic": ACK_FILTER, "allow": True},
    ]


def waiting_sessions(settings: MqttSettings) -> list[str]:
    """The client ids whose sessions are made before any worker connects.

    The configured workers' ids, or else this process's own id if it subscribes: never an id
    no worker will use, since Mosquitto gives a share of the telemetry to every member of the
    group, present or not, and an unused session would keep its share until it expired.
    """
    if settings.worker_client_ids:
        return list(settings.worker_client_ids)
    return [settings.client_id] if settings.subscribe else []


async def ensure_worker_access(admin: DynamicSecurity, settings: MqttSettings) -> bool:
    """Give the workers their role and client where missing; True if the client is new.

    An existing client keeps its password: resetting it would disconnect every worker using it,
    so a changed worker password is set with `mosquitto_ctrl dynsec setClientPassword`.
    """
    worker = BrokerAddress.from_url(settings.url)
    if not worker.username:
        return False
    await admin.ensure_role(INGEST_ROLE, worker_acls(settings.share_group))
    (created,) = await admin.execute(
        [
            {
                "command": "createClient",
                "username": worker.username,
                "password": worker.password or "",
                "roles": [{"rolename": INGEST_ROLE}],
            }
        ]
    )
    if failed(created, "already exists"):
        await admin.ensure_client_role(worker.username, INGEST_ROLE)
        return False
    require(created)
    return True


async def provision_workers(admin: DynamicSecurity, settings: MqttSettings) -> None:
    """Ensure the workers' access; if their client is new, make their sessions wait, subscribed."""
    if await ensure_worker_access(admin, settings):
        topic = shared_telemetry(settings.share_group)
        for client_id in waiting_sessions(settings):
            await reserve_session(settings, topic, client_id)
