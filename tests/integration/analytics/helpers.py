"""What the analytics tests share: delivering readings and waiting for their evaluation,
reading what was published and audited, and calling the alarm routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from medcloud.platform.models import DeadLetter, OutboxMessage, ProcessedEvent
from medcloud.platform.runtime import Runtime
from tests.support.client import Api, bearer, eventually

EVALUATOR = "analytics.evaluate_readings"
"""The consumer that runs the alarm rules and NEWS2 on stored readings."""
SECOND = dt.timedelta(seconds=1)


def runtime(api: Api) -> Runtime:
    value: Runtime = api.app.state.runtime
    return value


async def evaluations(api: Api) -> tuple[int, list[str]]:
    """Count the reading events analytics has applied; list why any were given up on."""
    async with runtime(api).read_sessions() as session:
        applied = await session.scalar(
            select(func.count())
            .select_from(ProcessedEvent)
            .where(ProcessedEvent.consumer == EVALUATOR)
        )
        dead = await session.scalars(
            select(DeadLetter.reason).where(DeadLetter.consumer == EVALUATOR)
        )
        return int(applied or 0), list(dead)


async def deliver(api: Api, device: dict[str, Any], *readings: dict[str, Any]) -> None:
    """Send readings as one batch and wait until analytics has evaluated them."""
    before, _ = await evaluations(api)
    response = await api.send(device, {"readings": list(readings)})
    assert response.status_code == 201, response.text
    assert response.json()["stored"] > 0, response.text

    async def settled() -> bool:
        applied, dead = await evaluations(api)
        return applied > before or bool(dead)

    await eventually(settled)
    applied, dead = await evaluations(api)
    assert dead == [], dead
    assert applied > before, "analytics did not evaluate the readings in time"


async def published(api: Api, routing_key: str) -> list[dict[str, Any]]:
    """Payloads of the events with `routing_key` written to the outbox, oldest first."""
    async with runtime(api).read_sessions() as session:
        bodies = await session.scalars(
            select(OutboxMessage.body)
            .where(OutboxMessage.routing_key == routing_key)
            .order_by(OutboxMessage.position)
        )
        return [orjson.loads(body)["payload"] for body in bodies]


async def audited(api: Api, action: str) -> list[dict[str, Any]]:
    """Payloads of the audit events with `action` written to the outbox, oldest first."""
    return [p for p in await published(api, "audit.recorded") if p["action"] == action]


async def get_alarm(api: Api, token: str, alert_id: str) -> httpx.Response:
    return await api.http.get(f"/api/v1/alerts/{alert_id}", headers=bearer(token))


async def acknowledge(api: Api, token: str, alert_id: str) -> httpx.Response:
    return await api.http.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=bearer(token))


async def silence(api: Api, token: str, alert_id: str, seconds: float) -> httpx.Response:
    return await api.http.post(
        f"/api/v1/alerts/{alert_id}/silence", json={"seconds": seconds}, headers=bearer(token)
    )


async def save_rule(api: Api, token: str, **rule: Any) -> dict[str, Any]:
    """Configure a rule (a heart-rate threshold unless told otherwise); return it."""
    body = {
        "key": "heart_rate",
        "kind": "threshold",
        "measurement": "heart_rate",
        "priority": "high",
        "low": 40,
        "high": 120,
        "hysteresis": 5,
    } | rule
    response = await api.http.post("/api/v1/alarm-rules", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    saved: dict[str, Any] = response.json()
    return saved


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert field in [error["field"] for error in response.json()["errors"]], response.text


def instant(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)
