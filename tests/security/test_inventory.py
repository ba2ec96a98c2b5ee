"""OWASP API9 (improper inventory management): the routes served, the routes documented and the
routes this suite holds to account are one list, and none answers without a token unless the
allow-list in tests/security/routes.py names it."""

from __future__ import annotations

import pytest

from tests.security import routes
from tests.security.conftest import Deployment

pytestmark = pytest.mark.asyncio(loop_scope="package")

VERSIONED = ("/api/v1/", "/fhir/r4/")
# Unversioned on purpose: probes, metrics and keys live where platforms and libraries look.
UNVERSIONED = {"/health", "/ready", "/metrics", "/.well-known/jwks.json"}


def served(deployment: Deployment) -> list[routes.Endpoint]:
    return routes.endpoints(deployment.api.app)


def documented(deployment: Deployment) -> set[tuple[str, str]]:
    document = deployment.api.app.openapi()
    return {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}


async def test_the_suite_tests_the_routes_the_running_app_serves(deployment: Deployment) -> None:
    # The generated tests are parametrised from an app built at collection; this is the one
    # that runs, with the deployment's settings.
    assert {e.key for e in served(deployment)} == {e.key for e in routes.collected()}


async def test_every_route_is_public_by_name_a_device_route_by_name_or_declares_one_action(
    deployment: Deployment,
) -> None:
    wrong = []
    for endpoint in served(deployment):
        if endpoint.is_public or endpoint.is_device_route:
            if endpoint.actions:
                wrong.append(f"{endpoint} is allow-listed but declares {set(endpoint.actions)}")
        elif len(endpoint.actions) != 1:
            wrong.append(f"{endpoint} declares {len(endpoint.actions)} policy actions, not one")
    assert wrong == []


async def test_every_allow_listed_route_exists(deployment: Deployment) -> None:
    keys = {e.key for e in served(deployment)}
    # The operator pages may be switched off entirely; everything else must still be there.
    pages = {("GET", p) for p in ("/openapi.json", "/docs", "/redoc")}
    assert (routes.PUBLIC - pages) - keys == set()
    assert routes.DEVICE_ROUTES - keys == set()
    assert routes.STREAMS | routes.WARD_EXEMPT <= keys


async def test_every_protected_route_that_reads_a_body_has_a_sample_one(
    deployment: Deployment,
) -> None:
    # The generated tests send each route a well-formed request; add one to routes.BODIES.
    missing = [
        str(e)
        for e in served(deployment)
        if not e.is_public and e.reads_body and e.key not in routes.BODIES
    ]
    assert missing == []


async def test_the_openapi_document_lists_exactly_the_routes_served(
    deployment: Deployment,
) -> None:
    table = served(deployment)
    assert {e.key for e in table if e.documented} == documented(deployment)
    # Only the documentation pages themselves stay out of the document.
    hidden = {e.key for e in table if not e.documented}
    assert {path for _, path in hidden} <= {"/openapi.json", "/docs", "/redoc"}


async def test_the_document_says_which_operations_need_a_token(deployment: Deployment) -> None:
    document = deployment.api.app.openapi()
    wrong = []
    for endpoint in served(deployment):
        if not endpoint.documented:
            continue
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        declares = bool(operation.get("security"))
        if declares == endpoint.is_public:
            wrong.append(f"{endpoint}: security {operation.get('security')}")
    assert wrong == []


async def test_every_route_is_versioned_or_an_operations_route(deployment: Deployment) -> None:
    unversioned = {
        e.path
        for e in served(deployment)
        if e.documented and not e.path.startswith(VERSIONED) and e.path not in UNVERSIONED
    }
    assert unversioned == set()


async def test_no_other_version_of_the_api_answers(deployment: Deployment) -> None:
    alice = deployment.cast.auth("alice_admin")
    answered = []
    for endpoint in served(deployment):
        if not endpoint.path.startswith("/api/v1/") or endpoint.method != "GET":
            continue
        path = endpoint.path.format(**deployment.ours.ids)
        for other in ("/api/v0/", "/api/v2/", "/api/", "/v1/"):
            response = await deployment.api.http.get(
                path.replace("/api/v1/", other, 1), headers=alice
            )
            if response.status_code != 404:
                answered.append(f"{other}: {response.status_code}")
    assert answered == []


async def test_a_method_a_route_does_not_serve_is_refused_never_run(
    deployment: Deployment,
) -> None:
    # A method no route declares must not reach a handler by accident (a catch-all, TRACE
    # echoing the request, an override header). 405 as a rule; where another route's template
    # takes the path (PATCH /users/me is PATCH /users/{user_id}), that route's refusal.
    by_path: dict[str, set[str]] = {}
    for endpoint in served(deployment):
        by_path.setdefault(endpoint.path, set()).add(endpoint.method)
    alice = deployment.cast.auth("alice_admin")
    wrong = []
    for path, methods in by_path.items():
        url = path.format(**deployment.ours.ids)
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE", "TRACE"} - methods:
            response = await deployment.api.http.request(method, url, headers=alice)
            if not 400 <= response.status_code < 500:
                wrong.append(f"{method} {path}: {response.status_code}")
        if "POST" not in methods:
            override = await deployment.api.http.post(
                url, headers=alice | {"X-HTTP-Method-Override": "DELETE"}
            )
            if not 400 <= override.status_code < 500:
                wrong.append(f"POST {path} overridden to DELETE: {override.status_code}")
    assert wrong == []
