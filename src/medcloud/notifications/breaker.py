"""The circuit of each organisation's channel (and webhook endpoint): failures are counted,
the circuit opens at the threshold and raises a technical alarm, lets one probe through once
it has rested (half-open), and closes on the next success."""

from __future__ import annotations

import datetime as dt
import uuid

import structlog

from medcloud.config import Settings
from medcloud.notifications import steps
from medcloud.notifications.batch import Batch
from medcloud.notifications.events import ChannelDown
from medcloud.notifications.models import Breaker, Delivery
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)

CIRCUIT_OPEN = "circuit open: the channel keeps failing"


def breaker_key(delivery: Delivery) -> str:
    """Name the circuit a delivery goes through: per organisation and channel (and endpoint)."""
    if delivery.channel == "webhook":
        return f"{delivery.organisation_id}:webhook:{delivery.target}"
    return f"{delivery.organisation_id}:{delivery.channel}"


def probe(circuit: Breaker, now: dt.datetime, reset_seconds: float) -> bool:
    """Let one delivery through an open circuit once it has rested (half-open)."""
    if circuit.opened_at is None or now - circuit.opened_at < dt.timedelta(seconds=reset_seconds):
        return False
    circuit.state, circuit.opened_at, circuit.updated_at = "half-open", now, now
    return True


async def count_failure(
    uow: UnitOfWork,
    row: Delivery,
    key: str,
    circuits: dict[str, Breaker],
    *,
    settings: Settings,
    now: dt.datetime,
) -> None:
    """Count a failure against the channel's circuit; open it (and raise the alarm) at the
    threshold, and reopen a half-open circuit whose probe failed.

    `circuits` holds the transaction's circuits by key (locked, see `repository.breakers`); a
    circuit made here joins it, so a later outcome in the same transaction counts on it.
    """
    config = settings.notifications
    circuit = circuits.get(key)
    if circuit is None:
        circuit = Breaker(
            key=key,
            organisation_id=row.organisation_id,
            channel=row.channel,
            failures=0,
            state="closed",
            updated_at=now,
        )
        uow.session.add(circuit)
        circuits[key] = circuit
    circuit.failures += 1
    circuit.reason, circuit.updated_at = row.reason, now
    if circuit.state == "half-open":
        circuit.state, circuit.opened_at = "open", now
        return
    if circuit.state != "closed" or circuit.failures < config.breaker_failures:
        return
    circuit.state, circuit.opened_at = "open", now
    circuit.alarm_id = str(uuid.uuid4())
    uow.publish(
        ChannelDown(
            organisation_id=row.organisation_id,
            alarm_id=circuit.alarm_id,
            channel=circuit.channel,
            reason=circuit.reason or "failing",
            since=now,
        )
    )
    log.error("notification.channel_down", channel=circuit.channel, failures=circuit.failures)
    async with Batch(uow.session) as batch:
        await steps.tell_fallback(
            batch,
            settings,
            now=now,
            organisation_id=row.organisation_id,
            alert_id=None,
            kind="channel_down",
            key=f"channel-down:{circuit.alarm_id}",
            avoid=row.channel,
            payload={"channel": circuit.channel},
        )
