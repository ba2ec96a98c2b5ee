"""Alarms to SNS: what a message says (and never says), its attributes, FIFO deduplication, and
that a failed publish fails the handler so the bus retries it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from medcloud.analytics.events import AlertRaised
from medcloud.config import NotificationSettings, Settings
from medcloud.notifications.events import AlertEscalated
from medcloud.notifications.sns import (
    SnsAlarms,
    SnsTopic,
    TopicMessage,
    escalated_message,
    provide_sns_alarms,
    publish_escalated_to_sns,
    publish_raised_to_sns,
    raised_message,
)

ARN = "arn:aws:sns:eu-west-2:123456789012:medcloud-alarms"
RAISED_AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
SECRET_MESSAGE = "Pat Doe, MRN-0001: heart rate 131"
# An unused unit of work: the consumer passes its own, which records the event as processed.
NO_UOW: Any = None


def settings(arn: str = ARN) -> Settings:
    return Settings(
        notifications=NotificationSettings(
            public_url="https://medcloud.example/", sns_topic_arn=arn
        )
    )


def high_heart_rate(**changes: Any) -> AlertRaised:
    fields: dict[str, Any] = {
        "organisation_id": "org-st-mary",
        "alert_id": "alert-1",
        "source": "clinical",
        "state": "active",
        "priority": "high",
        "device_id": "device-po-100",
        "patient_id": "patient-1",
        "ward_id": "ward-3b",
        "rule": "heart_rate_high",
        "measurement": "heart_rate",
        "value": 131.0,
        "last_value": 129.0,
        "worst_value": 133.0,
        "threshold": 120.0,
        "reading_timestamp": RAISED_AT,
        "raised_at": RAISED_AT,
        "changed_at": RAISED_AT,
        "message": SECRET_MESSAGE,
    }
    return AlertRaised(**(fields | changes))


def second_step() -> AlertEscalated:
    return AlertEscalated(
        organisation_id="org-st-mary",
        alert_id="alert-1",
        patient_id="patient-1",
        ward_id="ward-3b",
        priority="high",
        step=1,
        round=0,
        target="charge",
        recipients=2,
    )


class RecordingTopic:
    """A topic that keeps what it is given, or fails as SNS would."""

    def __init__(self, *, fail: bool = False) -> None:
        self.messages: list[TopicMessage] = []
        self.fail = fail

    async def publish(self, message: TopicMessage) -> None:
        if self.fail:
            raise ConnectionError("SNS did not answer")
        self.messages.append(message)


class RecordingClient:
    """boto3's SNS client as far as SnsTopic uses it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def publish(self, **request: Any) -> dict[str, str]:
        self.requests.append(request)
        return {"MessageId": f"m-{len(self.requests)}"}


def test_a_raised_alarm_message_carries_what_a_pager_needs() -> None:
    message = raised_message(high_heart_rate(), settings=settings())

    body = orjson.loads(message.body)
    assert body["type"] == "alert.raised"
    assert body["organisation_id"] == "org-st-mary"
    assert body["link"] == "https://medcloud.example/api/v1/alerts/alert-1"
    alert = body["alert"]
    assert (alert["alert_id"], alert["priority"], alert["rule"]) == (
        "alert-1",
        "high",
        "heart_rate_high",
    )
    assert (alert["ward_id"], alert["patient_id"], alert["device_id"]) == (
        "ward-3b",
        "patient-1",
        "device-po-100",
    )
    assert alert["raised_at"] == "2026-03-01T09:30:00Z"


def test_a_raised_alarm_message_carries_no_value_and_no_free_text() -> None:
    message = raised_message(high_heart_rate(), settings=settings())

    alert = orjson.loads(message.body)["alert"]
    for withheld in ("value", "last_value", "worst_value", "threshold", "measurement", "message"):
        assert withheld not in alert
    everything = message.body + message.subject + "".join(message.attributes.values())
    for number in ("131", "129", "133", "120"):
        assert number not in everything
    assert "Pat Doe" not in everything and "MRN" not in everything


def test_the_priority_is_an_attribute_subscriptions_can_filter_on() -> None:
    message = raised_message(high_heart_rate(priority="medium"), settings=settings())

    assert message.attributes["priority"] == "medium"
    assert message.attributes["event_type"] == "alert.raised"
    assert message.attributes["ward_id"] == "ward-3b"
    assert message.subject == "medcloud: medium priority alarm"


def test_an_alarm_in_no_ward_has_no_ward_attribute() -> None:
    message = raised_message(high_heart_rate(ward_id=None), settings=settings())

    assert "ward_id" not in message.attributes
    assert orjson.loads(message.body)["alert"]["ward_id"] is None


def test_every_delivery_of_one_fact_has_the_same_key_and_each_step_its_own() -> None:
    first = raised_message(high_heart_rate(), settings=settings())
    again = raised_message(high_heart_rate(), settings=settings())
    other_alarm = raised_message(high_heart_rate(alert_id="alert-2"), settings=settings())
    step = escalated_message(second_step(), settings=settings())
    next_round = escalated_message(
        second_step().model_copy(update={"round": 1}), settings=settings()
    )

    assert first.idempotency_key == again.idempotency_key == "alert-1:alert.raised"
    assert first.attributes["idempotency_key"] == first.idempotency_key
    keys = {first.idempotency_key, other_alarm.idempotency_key}
    keys |= {step.idempotency_key, next_round.idempotency_key}
    assert len(keys) == 4


def test_an_escalation_message_says_which_step_and_round() -> None:
    message = escalated_message(second_step(), settings=settings())

    body = orjson.loads(message.body)
    assert body["type"] == "alert.escalated"
    assert body["alert"] == {
        "alert_id": "alert-1",
        "priority": "high",
        "ward_id": "ward-3b",
        "patient_id": "patient-1",
        "step": 1,
        "round": 0,
        "target": "charge",
    }
    assert message.subject == "medcloud: escalated high priority alarm"
    assert message.group == "alert-1"


def test_a_standard_topic_gets_attributes_but_no_deduplication_parameters() -> None:
    client = RecordingClient()
    message = raised_message(high_heart_rate(), settings=settings())

    SnsTopic(ARN, client=client)._publish(message)

    [request] = client.requests
    assert request["TopicArn"] == ARN
    assert request["Message"] == message.body
    assert request["MessageAttributes"]["priority"] == {"DataType": "String", "StringValue": "high"}
    assert "MessageDeduplicationId" not in request and "MessageGroupId" not in request


def test_a_fifo_topic_deduplicates_on_the_idempotency_key() -> None:
    client = RecordingClient()
    message = raised_message(high_heart_rate(), settings=settings())

    SnsTopic(f"{ARN}.fifo", client=client)._publish(message)

    [request] = client.requests
    assert request["MessageDeduplicationId"] == "alert-1:alert.raised"
    assert request["MessageGroupId"] == "alert-1"


async def test_the_handlers_publish_new_and_escalated_alarms() -> None:
    topic = RecordingTopic()
    alarms = SnsAlarms(topic)

    await publish_raised_to_sns(
        high_heart_rate(), uow=NO_UOW, settings=settings(), sns_alarms=alarms
    )
    await publish_escalated_to_sns(
        second_step(), uow=NO_UOW, settings=settings(), sns_alarms=alarms
    )

    assert [m.attributes["event_type"] for m in topic.messages] == [
        "alert.raised",
        "alert.escalated",
    ]
    assert alarms.published == 2


async def test_the_first_step_is_not_published_again_but_a_repeated_first_step_is() -> None:
    topic = RecordingTopic()
    alarms = SnsAlarms(topic)
    first = second_step().model_copy(update={"step": 0})

    await publish_escalated_to_sns(first, uow=NO_UOW, settings=settings(), sns_alarms=alarms)
    assert topic.messages == []
    repeated = first.model_copy(update={"round": 1})
    await publish_escalated_to_sns(repeated, uow=NO_UOW, settings=settings(), sns_alarms=alarms)
    assert [m.idempotency_key for m in topic.messages] == ["alert-1:alert.escalated:1:0"]


async def test_a_failed_publish_fails_the_handler_so_the_bus_retries() -> None:
    alarms = SnsAlarms(RecordingTopic(fail=True))

    with pytest.raises(ConnectionError):
        await publish_raised_to_sns(
            high_heart_rate(), uow=NO_UOW, settings=settings(), sns_alarms=alarms
        )
    assert alarms.published == 0


async def test_without_a_topic_nothing_is_published() -> None:
    alarms = await provide_sns_alarms(settings=settings(arn=""))

    assert alarms.topic is None
    await publish_raised_to_sns(
        high_heart_rate(), uow=NO_UOW, settings=settings(arn=""), sns_alarms=alarms
    )
    assert alarms.published == 0


async def test_a_topic_arn_gives_a_topic_in_the_arns_region() -> None:
    alarms = await provide_sns_alarms(settings=settings(arn=f"{ARN}.fifo"))

    assert isinstance(alarms.topic, SnsTopic)
    assert alarms.topic.arn == f"{ARN}.fifo" and alarms.topic.fifo


@pytest.mark.parametrize(
    "arn",
    ["medcloud-alarms", "arn:aws:sqs:eu-west-2:123456789012:q", "arn:aws:sns:eu-west-2:1:topic"],
)
def test_a_setting_that_is_not_an_sns_topic_arn_is_refused(arn: str) -> None:
    with pytest.raises(ValidationError):
        NotificationSettings(sns_topic_arn=arn)
