"""The reference design's chain, run locally: a file of readings put in S3 → the upload function
→ the readings stored → analytics raises the alarm → notifications publish it to SNS, which hands
it to a subscribed SQS queue (moto's server stands in for S3, SNS and SQS)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import orjson
import pytest
from sqlalchemy import select

from medcloud.config import Settings
from medcloud.functions.uploads import handle_event
from medcloud.platform.models import DeadLetter
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.client import Api, eventually, now, reading, running
from tests.support.s3 import KEY_ID, REGION, SECRET, S3Service, moto_s3

PREFIX = "medcloud"


@dataclass(frozen=True)
class Pager:
    """An SNS topic and the SQS queue subscribed to it, on moto's server."""

    endpoint_url: str
    topic_arn: str
    queue_url: str

    def messages(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Take what has arrived: each SNS notification, with its message parsed."""
        received = _client("sqs", self.endpoint_url).receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
        )
        found = []
        for item in received.get("Messages", []):
            notification = orjson.loads(item["Body"])
            notification["Message"] = orjson.loads(notification["Message"])
            found.append(notification)
        return found


def _client(service: str, endpoint_url: str) -> Any:
    session = boto3.session.Session(
        region_name=REGION, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    return session.client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def moto() -> Iterator[S3Service]:
    # One server answers S3, SNS and SQS alike.
    with moto_s3() as service:
        yield service


@pytest.fixture
def pager(moto: S3Service, monkeypatch: pytest.MonkeyPatch) -> Pager:
    name = f"medcloud-alarms-{uuid.uuid4().hex[:8]}"
    sns = _client("sns", moto.endpoint_url)
    sqs = _client("sqs", moto.endpoint_url)
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    # Where medcloud's SNS client finds its endpoint and credentials: boto3's usual variables.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return Pager(moto.endpoint_url, topic_arn, queue_url)


def deployment(settings: Settings, moto: S3Service, bucket: str, topic_arn: str) -> Settings:
    """`settings` with objects in `bucket`, alarms to `topic_arn`, no upload watcher (the
    function is what takes the files here)."""
    on_s3 = moto.settings(settings, bucket, PREFIX)
    return on_s3.model_copy(
        update={
            "ingest": on_s3.ingest.model_copy(update={"upload_poll_seconds": 0.0}),
            "notifications": on_s3.notifications.model_copy(update={"sns_topic_arn": topic_arn}),
        }
    )


@dataclass(frozen=True)
class Ward:
    api: Api
    alice: str
    device: dict[str, Any]
    bucket: str
    settings: Settings


@pytest.fixture
async def ward(settings: Settings, moto: S3Service, pager: Pager) -> AsyncIterator[Ward]:
    """A running deployment with a device assigned to a patient."""
    bucket = moto.create_bucket()
    configured = deployment(settings, moto, bucket, pager.topic_arn)
    async with running(configured) as api:
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        patient = await api.create_patient(alice)
        device = await api.register_device(alice, patient_id=patient)
        yield Ward(api, alice, device, bucket, configured)


async def upload(ward: Ward, moto: S3Service, name: str, heart_rate: float) -> dict[str, Any]:
    """Put a file of one reading in the bucket as a gateway would; run the upload function."""
    key = f"{PREFIX}/uploads/{ward.device['id']}/{name}.ndjson"
    # Taken after the device was assigned: a reading belongs to the patient of its time.
    taken = now()
    body = orjson.dumps(reading(taken, heart_rate=heart_rate)) + b"\n"
    moto.client().put_object(Bucket=ward.bucket, Key=key, Body=body)
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": ward.bucket}, "object": {"key": key}},
            }
        ]
    }
    return await handle_event(event, ward.settings)


async def test_a_high_heart_rate_uploaded_to_s3_pages_the_sns_topic_once(
    ward: Ward, moto: S3Service, pager: Pager
) -> None:
    # A normal file first: had it raised an alarm, its message would come first.
    assert (await upload(ward, moto, "normal", heart_rate=72))["stored"] == 1
    assert (await upload(ward, moto, "fast", heart_rate=130))["stored"] == 1

    [alert] = await ward.api.wait_for_alerts(ward.alice, 1)
    arrived: list[dict[str, Any]] = []

    async def one_arrived() -> bool:
        arrived.extend(await asyncio.to_thread(pager.messages, 1))
        return bool(arrived)

    assert await eventually(one_arrived, timeout=30)
    arrived.extend(await asyncio.to_thread(pager.messages, 1))  # any duplicate or a second alarm

    [notification] = arrived
    message = notification["Message"]
    assert message["type"] == "alert.raised"
    assert message["alert"]["alert_id"] == alert["id"]
    assert message["alert"]["rule"] == "heart_rate_high"
    assert message["alert"]["device_id"] == ward.device["id"]
    assert message["alert"]["patient_id"] == ward.device["patient_id"] is not None
    assert message["link"].endswith(f"/api/v1/alerts/{alert['id']}")
    assert notification["MessageAttributes"]["priority"]["Value"] == alert["priority"]
    assert notification["MessageAttributes"]["idempotency_key"]["Value"] == (
        f"{alert['id']}:alert.raised"
    )
    assert "130" not in orjson.dumps(message).decode()
    assert len(await ward.api.alerts(ward.alice)) == 1


async def test_a_topic_that_refuses_the_message_dead_letters_the_event(
    settings: Settings, moto: S3Service, pager: Pager
) -> None:
    missing = pager.topic_arn.rsplit(":", 1)[0] + ":no-such-topic"
    bucket = moto.create_bucket()
    async with running(deployment(settings, moto, bucket, missing)) as api:
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        device = await api.register_device(alice, patient_id=await api.create_patient(alice))
        ward = Ward(api, alice, device, bucket, api.app.state.runtime.settings)
        await upload(ward, moto, "fast", heart_rate=130)
        runtime = api.app.state.runtime

        async def dead_letters() -> list[DeadLetter]:
            async with runtime.read_sessions() as session:
                found = await session.scalars(
                    select(DeadLetter).where(
                        DeadLetter.consumer == "notifications.publish_raised_to_sns"
                    )
                )
                return list(found.all())

        [letter] = await eventually(dead_letters, timeout=30)
        assert letter.routing_key == "alert.raised"
        assert letter.attempts == settings.bus.max_attempts
        # The other consumers of the alarm went on: it is listed and escalating.
        assert len(await api.alerts(alice)) == 1
    assert await asyncio.to_thread(pager.messages) == []
