"""The OpenAPI document is whole: every reference resolves, every example fits its schema,
and every operation documents the error answers it can give, as problem details."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.contract.conftest import Served

PROBLEM = {"$ref": "#/components/schemas/Problem"}
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document(served: Served) -> dict[str, Any]:
    """The document as served: the one clients read."""
    response = httpx.get(f"{served.url}/openapi.json")
    assert response.status_code == 200
    served_document: dict[str, Any] = response.json()
    return served_document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def walk(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{where}/{index}")


def test_the_served_document_is_the_apps(document: dict[str, Any], served: Served) -> None:
    assert document == served.app.openapi()


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    broken = [
        (where, node["$ref"])
        for where, node in walk(document)
        if isinstance(node.get("$ref"), str)
        and node["$ref"].removeprefix("#/components/schemas/") not in schemas
    ]
    assert broken == []
    assert not [where for where, node in walk(document) if "$defs" in node]


def test_every_example_fits_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    for where, node in walk(document):
        if "example" in node:
            schema, examples = node.get("schema", node), [node["example"]]
        elif isinstance(node.get("examples"), list) and "type" in node:
            schema, examples = node, node["examples"]
        else:
            continue
        # The document as the root, so that `#/components/schemas/…` resolves.
        root = {**schema, "components": document["components"]}
        validator = jsonschema_rs.Draft202012Validator(root, validate_formats=True)
        for example in examples:
            assert [error.message for error in validator.iter_errors(example)] == [], where
            checked += 1
    assert checked > 0


def error_answers(operation: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {
        int(status): answer
        for status, answer in operation["responses"].items()
        if status[0] in "45"
    }


def test_errors_are_problem_details_with_one_schema(document: dict[str, Any]) -> None:
    assert "Problem" in document["components"]["schemas"]
    for method, path, operation in operations(document):
        for status, answer in error_answers(operation).items():
            media_types = answer["content"]
            if path.startswith("/fhir/"):
                assert set(media_types) == {"application/fhir+json"}, (method, path, status)
            else:
                assert media_types == {"application/problem+json": {"schema": PROBLEM}}, (
                    method,
                    path,
                    status,
                )


def test_each_operation_documents_the_errors_it_can_give(document: dict[str, Any]) -> None:
    never_limited = {"/health", "/ready", "/metrics"}
    for method, path, operation in operations(document):
        statuses = set(error_answers(operation))
        label = f"{method.upper()} {path}"
        takes_input = bool(operation.get("parameters")) or "requestBody" in operation
        if operation.get("security"):
            assert {401, 403} <= statuses, label
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], label
        assert (429 in statuses) is (path not in never_limited), label
        if 429 in statuses:
            assert "Retry-After" in operation["responses"]["429"]["headers"], label
        assert (422 in statuses) is takes_input, label
        if "{" in path:
            assert 404 in statuses, label
        if "requestBody" in operation:
            assert {400, 413, 415} <= statuses, label
        else:
            assert not {413, 415} & statuses, label


def test_fastapi_validation_schemas_are_gone(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas


def test_links_name_operations_of_the_document(document: dict[str, Any]) -> None:
    ids = {operation["operationId"] for _, _, operation in operations(document)}
    links = [
        link
        for _, _, operation in operations(document)
        for answer in operation["responses"].values()
        for link in answer.get("links", {}).values()
    ]
    assert links
    assert {link["operationId"] for link in links} <= ids
    created = document["paths"]["/api/v1/patients"]["post"]["responses"]["201"]["links"]
    assert {
        "operationId": "read_patient_api_v1_patients__patient_id__get",
        "parameters": {"path.patient_id": "$response.body#/id"},
    } in created.values()
