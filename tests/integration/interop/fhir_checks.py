"""Helpers of the FHIR API tests: validation against the R4B models, and a real HTTP server for
FHIR client libraries, which cannot speak to an in-process ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from fhir.resources.R4B import get_fhir_model_class

from tests.support.client import Api
from tests.support.processes import free_port

FHIR_JSON = "application/fhir+json"


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate `resource` (and a Bundle's entries) with its fhir.resources R4B model."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        valid(entry["resource"])
    return resource


def serialized(resource: Any) -> dict[str, Any]:
    """A FHIR client library's resource as plain JSON."""
    body: dict[str, Any] = resource.serialize()
    return body


def fhir_json(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The valid FHIR resource a response carries with `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers
    body: dict[str, Any] = response.json()
    return valid(body)


def outcome(response: httpx.Response, status: int, code: str) -> str:
    """The diagnostics of the OperationOutcome a refusal carries, checked for its issue code."""
    body = fhir_json(response, status)
    assert body["resourceType"] == "OperationOutcome", body
    [issue] = body["issue"]
    assert issue["code"] == code, issue
    return str(issue.get("diagnostics", ""))


def ids(bundle: dict[str, Any]) -> list[str]:
    """The ids of a searchset's resources, in order."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    """The URL of a searchset's link of this relation, None if it has none."""
    return next((k["url"] for k in bundle.get("link", []) if k["relation"] == relation), None)


@contextlib.asynccontextmanager
async def listening(api: Api) -> AsyncIterator[str]:
    """Serve the running app over real HTTP on a free port; yield its FHIR base URL."""
    port = free_port()
    # The app is started already (its lifespan belongs to `api`): uvicorn only serves it.
    config = uvicorn.Config(
        api.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(3000):
            if server.started:
                break
            if task.done():
                task.result()
                raise AssertionError("uvicorn stopped before it listened")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/fhir/r4"
    finally:
        server.should_exit = True
        await task
