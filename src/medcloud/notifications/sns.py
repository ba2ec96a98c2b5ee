"""Alarms to an Amazon SNS topic: every new and every escalated alarm, for the pagers, on-call
tools and operations queues that subscribe to it (`MEDCLOUD_NOTIFICATIONS__SNS_TOPIC_ARN`).

The message is the one the organisation's webhooks receive (`docs/webhooks.md`): the alarm's
ids, priority, condition, times and a link behind sign-in, never a value, a name or a hospital
identifier, since SNS hands it to email, SMS and queues medcloud does not control. The priority
is also a message attribute, so a subscription's filter policy can route high priority alone.

Each alarm change is published from its own consumer, in the transaction that records the event
as processed: a publish that fails rolls that back and the bus retries, then dead-letters it.
A publish that succeeded before its commit failed is sent again, under the same idempotency key
(attribute `idempotency_key`; the deduplication id on a FIFO topic), so subscribers can tell.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import structlog

from medcloud.analytics.events import AlertRaised
from medcloud.config import Settings
from medcloud.notifications.events import AlertEscalated
from medcloud.notifications.outbound import alarm_link
from medcloud.notifications.service import FEED_FIELDS
from medcloud.platform.bus import Subscription
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)

SUBJECT_MAX_CHARS = 100
"""SNS refuses longer subjects."""
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
# The publish runs inside the consumer's transaction, which on SQLite holds the one write
# connection: a topic that does not answer must fail fast and be retried, not stall writers.


@dataclass(frozen=True)
class TopicMessage:
    """One publish: the JSON body, its subject and attributes, and its idempotency key."""

    body: str
    subject: str
    attributes: Mapping[str, str]
    idempotency_key: str
    group: str
    """Messages of one alarm stay in order on a FIFO topic."""


class AlarmTopic(Protocol):
    """Where alarm messages are published; raises when a message may not have arrived."""

    async def publish(self, message: TopicMessage) -> None:
        """Publish `message`."""
        ...


def raised_message(event: AlertRaised, *, settings: Settings) -> TopicMessage:
    """The message of a new alarm: what the live stream and webhooks say of it."""
    alert = event.model_dump(mode="json", include=set(FEED_FIELDS))
    return _message(event, alert, key=f"{event.alert_id}:{event.routing_key}", settings=settings)


def escalated_message(event: AlertEscalated, *, settings: Settings) -> TopicMessage:
    """The message of an alarm that went on to its next escalation step."""
    alert = {
        "alert_id": event.alert_id,
        "priority": event.priority,
        "ward_id": event.ward_id,
        "patient_id": event.patient_id,
        "step": event.step,
        "round": event.round,
        "target": event.target,
    }
    # The webhooks' key for the same step: one message per step of each round.
    key = f"{event.alert_id}:{event.routing_key}:{event.round}:{event.step}"
    return _message(event, alert, key=key, settings=settings)


def _message(
    event: AlertRaised | AlertEscalated, alert: dict[str, Any], *, key: str, settings: Settings
) -> TopicMessage:
    body = {
        "type": event.routing_key,
        "organisation_id": event.organisation_id,
        "alert": alert,
        "link": alarm_link(settings, event.alert_id),
    }
    attributes = {
        "event_type": event.routing_key,
        "priority": event.priority,
        "organisation_id": event.organisation_id,
        "idempotency_key": key,
    }
    if event.ward_id is not None:
        attributes["ward_id"] = event.ward_id
    # Subjects become email subjects and lock-screen lines: the priority, nothing of the patient.
    escalated = "escalated " if isinstance(event, AlertEscalated) else ""
    subject = f"medcloud: {escalated}{event.priority} priority alarm"
    return TopicMessage(
        body=orjson.dumps(body).decode(),
        subject=subject[:SUBJECT_MAX_CHARS],
        attributes=attributes,
        idempotency_key=key,
        group=event.alert_id,
    )


class SnsTopic:
    """An SNS topic, published to with boto3 in a worker thread.

    The region is the topic ARN's; credentials and endpoint are boto3's usual configuration (the
    function's or instance's role, `AWS_*` variables, `AWS_ENDPOINT_URL_SNS` for a local
    service). The client is created on first use and shared: boto3 clients are thread-safe.
    """

    def __init__(self, arn: str, *, client: Any = None) -> None:
        self.arn = arn
        self.fifo = arn.endswith(".fifo")
        self._client = client
        self._lock = threading.Lock()

    def _sns(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                )
                self._client = boto3.client(
                    "sns", region_name=self.arn.split(":")[3], config=config
                )
            return self._client

    async def publish(self, message: TopicMessage) -> None:
        """Publish `message`; raise (botocore's error) if SNS did not accept it."""
        await asyncio.to_thread(self._publish, message)

    def _publish(self, message: TopicMessage) -> None:
        request: dict[str, Any] = {
            "TopicArn": self.arn,
            "Message": message.body,
            "Subject": message.subject,
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value}
                for name, value in message.attributes.items()
            },
        }
        if self.fifo:
            # Standard topics refuse these parameters; FIFO topics require them.
            request["MessageDeduplicationId"] = message.idempotency_key
            request["MessageGroupId"] = message.group
        self._sns().publish(**request)


@dataclass
class SnsAlarms:
    """The process's SNS topic for alarms, or none when the setting is empty."""

    topic: AlarmTopic | None = None
    published: int = field(default=0, init=False)

    async def publish(self, message: TopicMessage) -> None:
        """Publish `message` to the topic, if there is one."""
        if self.topic is None:
            return
        await self.topic.publish(message)
        self.published += 1
        log.info(
            "notification.sns.published",
            event_type=message.attributes["event_type"],
            idempotency_key=message.idempotency_key,
        )


async def provide_sns_alarms(*, settings: Settings) -> SnsAlarms:
    """Give this process's consumers the SNS topic the settings name (no connection yet)."""
    arn = settings.notifications.sns_topic_arn
    return SnsAlarms(SnsTopic(arn) if arn else None)


# `uow` is the consumer's transaction, which records the event as processed: nothing else to
# write, and the consumer passes it to every handler.
async def publish_raised_to_sns(
    event: AlertRaised,
    *,
    uow: UnitOfWork,  # noqa: ARG001
    settings: Settings,
    sns_alarms: SnsAlarms,
) -> None:
    """Publish a new alarm to the SNS topic."""
    await sns_alarms.publish(raised_message(event, settings=settings))


async def publish_escalated_to_sns(
    event: AlertEscalated,
    *,
    uow: UnitOfWork,  # noqa: ARG001
    settings: Settings,
    sns_alarms: SnsAlarms,
) -> None:
    """Publish an alarm's escalation beyond its first step to the SNS topic."""
    if event.step == 0 and event.round == 0:
        return  # the first step runs as the alarm is raised: its message went out then
    await sns_alarms.publish(escalated_message(event, settings=settings))


SUBSCRIPTIONS = (
    Subscription(AlertRaised, publish_raised_to_sns),
    Subscription(AlertEscalated, publish_escalated_to_sns),
)
