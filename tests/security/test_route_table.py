"""Who may call what, generated from the app's own route table (OWASP API1, API2, API5).

Every protected route is called with no token, with a device's token, by every role that lacks
its action, with ids that name nothing, by a clinician of another ward on Peter's objects, and
by every member of St Mary's who holds its action on the objects of Mallory Health, another
organisation. Refusals must be 401, 403 or 404 (never a success, never a 5xx), in the route's
error format, and no answer may show the other ward's or organisation's objects.

The last two also send the very same request as its owner (carol for Peter's objects, Mallory's
staff or device for theirs) and expect it to succeed: a refusal is then about who asked, never
an accident of a malformed request.

The requests of every test are planned and sent together, in phases (see `Call.phase`), by the
`exchanges` fixture; each test then judges the answers to its own route's requests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from medcloud.platform.policy import ROLE_PERMISSIONS
from medcloud.platform.security import Role
from tests.security import routes
from tests.security.conftest import Deployment
from tests.security.routes import Endpoint, Probe
from tests.support.estate import PATIENT_BOUND, Estate

pytestmark = pytest.mark.asyncio(loop_scope="package")

# Path parameters whose objects a clinician of another ward must not reach: the patient's own,
# the rule written for them, the ward's export, a colleague's notification details.
WARD_BOUND = PATIENT_BOUND | {"rule_id", "ward_id", "user_id"}
SUCCESS = (200, 201, 204)
# Ids a client might send that name nothing: hostile, malformed and merely odd.
NOT_IDS = ["' OR '1'='1", "..%2F..%2Fetc%2Fpasswd", "0" * 300, "\u202e", "-1", "null"]
# Requests in flight at once. Refusals are audited, so nearly every request writes; on SQLite
# one at a time each waits for the one SQLite writer in turn; together, the waits overlap.
CONCURRENCY = 64

# Known holes, by test and route: each test fails until the hole is fixed, and then fails again
# (strict) so that its mark is removed. None is open.
KNOWN: dict[tuple[str, tuple[str, str]], str] = {}


@dataclass(frozen=True)
class Call:
    """One request a test sends, as whom, and what it must get back."""

    test: str
    probe: Probe
    who: str | None
    wanted: tuple[int, ...]
    markers: frozenset[str] = frozenset()
    """Ids (or names) the answer must not show, beyond what the request itself said."""
    phase: int = 0
    """When it is sent: refusals first (those of routes that end an object after the rest),
    then the owners' requests, in `routes.run_order`. Calls of one phase go together."""


def ward_cases() -> list[Endpoint]:
    """Routes a clinician may call that name, list or search a patient's objects."""
    return [
        e
        for e in routes.for_people()
        if not e.is_stream
        and e.key not in routes.WARD_EXEMPT
        and e.action in ROLE_PERMISSIONS[Role.CLINICIAN]
        and (e.method == "GET" or routes.names_objects(e))
    ]


def organisation_cases() -> list[Endpoint]:
    """Routes whose requests name an organisation's objects, and listings that could show
    them."""
    return [
        e
        for e in routes.protected()
        if not e.is_stream and (e.method == "GET" or routes.names_objects(e))
    ]


def unknown_cases() -> list[Endpoint]:
    return [e for e in routes.protected() if e.path_params and not e.is_stream]


def refusal_phase(endpoint: Endpoint) -> int:
    return 1 if routes.run_order(endpoint) == 4 else 0


def owner_phase(endpoint: Endpoint) -> int:
    return 2 + routes.run_order(endpoint)


def plan(deployment: Deployment) -> list[Call]:
    """Every request of every test in this module."""
    ours, theirs = deployment.ours, deployment.theirs
    calls: list[Call] = []
    for endpoint in routes.protected():
        for probe in routes.probes(endpoint, ours):
            calls.append(Call("anonymous", probe, None, (401,)))
    for endpoint in routes.for_people():
        for probe in routes.probes(endpoint, ours):
            calls.append(
                Call("device", probe, "peters_oximeter", (403,), frozenset(ours.markers()))
            )
            calls += [
                Call("role", probe, who, (403,), frozenset(ours.patient_markers()))
                for who in endpoint.lackers()
            ]
    for endpoint in routes.protected():
        if not endpoint.is_device_route:
            continue
        for probe in routes.probes(endpoint, ours):
            # People of any role, a device of the same organisation, a device of another.
            for who in ("alice_admin", "carol_clinician", "tess_technician"):
                calls.append(Call("device route", probe, who, (403,)))
            for who in ("olives_monitor", "mallorys_device"):
                calls.append(Call("device route", probe, who, (403,)))
            calls.append(
                Call("device route", probe, ours.device, SUCCESS, phase=owner_phase(endpoint))
            )
    calls += unknown_calls(deployment)
    calls += ward_calls(deployment)
    for endpoint in organisation_cases():
        calls += organisation_calls(endpoint, theirs)
    return calls


def unknown_calls(deployment: Deployment) -> list[Call]:
    calls = []
    for endpoint in unknown_cases():
        who = "peters_oximeter" if endpoint.is_device_route else endpoint.holders()[0]
        # A device asking about another device is refused before anything is looked up.
        refused = 403 if endpoint.is_device_route else 404
        fresh = {name: str(uuid.uuid4()) for name in endpoint.path_params}
        for probe in routes.probes(endpoint, deployment.ours, fresh):
            calls.append(Call("unknown", probe, who, (refused,)))
        for odd in NOT_IDS:
            for probe in routes.probes(endpoint, deployment.ours, dict.fromkeys(fresh, odd)):
                # Some are not paths of the route at all (an encoded slash): no route answers.
                calls.append(Call("unknown", probe, who, (400, refused, 404, 405, 422)))
    return calls


def ward_calls(deployment: Deployment) -> list[Call]:
    ours = deployment.ours
    markers = frozenset(ours.patient_markers())
    calls = []
    for endpoint in ward_cases():
        for probe in routes.probes(endpoint, ours):
            if any(p in WARD_BOUND for p in endpoint.path_params):
                wanted: tuple[int, ...] = (404,)
            elif endpoint.method == "GET":
                wanted = (200, 404, 422)
            else:
                wanted = (403, 404, 422)
            phase = refusal_phase(endpoint)
            calls.append(Call("ward", probe, routes.OTHER_WARD, wanted, markers, phase))
            calls.append(Call("ward", probe, ours.clinician, SUCCESS, phase=owner_phase(endpoint)))
    return calls


def organisation_calls(endpoint: Endpoint, theirs: Estate) -> list[Call]:
    markers = frozenset(theirs.markers())
    if endpoint.path.startswith("/api/v1/audit"):
        # St Mary's log rightly names the ids its people asked for (refusals are audited with
        # their path): what it must never hold is an entry of Mallory's organisation.
        markers = frozenset({theirs.organisation_id})
    calls = []
    for probe in routes.probes(endpoint, theirs):
        wanted: tuple[int, ...] = (403,)
        if endpoint.is_device_route:
            attackers, owner = ["peters_oximeter"], theirs.device
        else:
            attackers, owner = endpoint.holders(), endpoint.owner()
            if probe.names_in_path:
                wanted = (404,)
            elif endpoint.method == "GET":
                wanted = (200, 404, 422)
            else:
                wanted = (403, 404, 422)
        phase = refusal_phase(endpoint)
        calls += [Call("organisation", probe, who, wanted, markers, phase) for who in attackers]
        calls.append(Call("organisation", probe, owner, SUCCESS, phase=owner_phase(endpoint)))
    return calls


Answers = dict[tuple[str, tuple[str, str]], list[tuple[Call, httpx.Response]]]


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def exchanges(deployment: Deployment) -> AsyncIterator[Answers]:
    """Send every planned request, phase by phase, many at once; answers by test and route."""
    calls = plan(deployment)
    answers: Answers = defaultdict(list)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def send(call: Call) -> httpx.Response:
        headers = deployment.cast.auth(call.who) if call.who is not None else {}
        async with slots:
            return await routes.request(
                deployment.api.http,
                call.probe.endpoint.method,
                call.probe.url,
                body=call.probe.body,
                headers=headers,
            )

    for phase in sorted({c.phase for c in calls}):
        batch = [c for c in calls if c.phase == phase]
        got = await asyncio.gather(*map(send, batch))
        for call, response in zip(batch, got, strict=True):
            answers[(call.test, call.probe.endpoint.key)].append((call, response))
    yield answers


def judge(answers: Answers, test: str, endpoint: Endpoint) -> None:
    """Fail with every wrong answer to the route's requests in `test`."""
    exchanged = answers[(test, endpoint.key)]
    assert exchanged, f"{test}: no request was planned for {endpoint}"
    failures = []
    for call, response in exchanged:
        who = call.who or "anonymous"
        if response.status_code not in call.wanted:
            failures.append(
                f"{call.probe} as {who}: {response.status_code}, wanted {call.wanted}: "
                f"{response.text[:300]}"
            )
            continue
        if response.status_code >= 400:
            media_type = response.headers.get("content-type", "")
            if not media_type.startswith(endpoint.problem_type):
                failures.append(f"{call.probe} as {who}: an error in {media_type}")
        if response.status_code == 401:
            # RFC 6750 section 3: a 401 names the scheme the client should use.
            if "bearer" not in response.headers.get("www-authenticate", "").lower():
                failures.append(f"{call.probe}: 401 without WWW-Authenticate: Bearer")
        said = call.probe.echoes()
        shown = sorted(m for m in call.markers if m in response.text and m not in said)
        if shown:
            failures.append(f"{call.probe} as {who} shows {shown}: {response.text[:300]}")
    assert failures == [], "\n".join(failures)


def cases(test: str, endpoints: Iterable[Endpoint]) -> list[object]:
    """Parameters for `test`, one per route, known holes marked."""
    found: list[object] = []
    for endpoint in endpoints:
        reason = KNOWN.get((test, endpoint.key))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        found.append(pytest.param(endpoint, id=str(endpoint), marks=marks))
    return found


@pytest.mark.parametrize("endpoint", cases("anonymous", routes.protected()))
async def test_a_caller_without_a_token_gets_401(exchanges: Answers, endpoint: Endpoint) -> None:
    judge(exchanges, "anonymous", endpoint)


@pytest.mark.parametrize("endpoint", cases("device", routes.for_people()))
async def test_a_device_token_opens_no_route_for_people(
    exchanges: Answers, endpoint: Endpoint
) -> None:
    judge(exchanges, "device", endpoint)


@pytest.mark.parametrize(
    "endpoint", cases("device route", [e for e in routes.protected() if e.is_device_route])
)
async def test_a_device_route_answers_only_the_device_it_names(
    exchanges: Answers, endpoint: Endpoint
) -> None:
    judge(exchanges, "device route", endpoint)


@pytest.mark.parametrize("endpoint", cases("role", [e for e in routes.for_people() if e.lackers()]))
async def test_a_role_without_the_routes_action_gets_403(
    exchanges: Answers, endpoint: Endpoint
) -> None:
    judge(exchanges, "role", endpoint)


@pytest.mark.parametrize("endpoint", cases("unknown", unknown_cases()))
async def test_ids_that_name_nothing_get_404_never_a_server_error(
    exchanges: Answers, endpoint: Endpoint
) -> None:
    judge(exchanges, "unknown", endpoint)


@pytest.mark.parametrize("endpoint", cases("ward", ward_cases()))
async def test_a_clinician_of_another_ward_reaches_nothing_of_peters(
    exchanges: Answers, endpoint: Endpoint
) -> None:
    judge(exchanges, "ward", endpoint)


@pytest.mark.parametrize("endpoint", cases("organisation", organisation_cases()))
async def test_another_organisation_reaches_nothing_of_mallorys(
    exchanges: Answers, endpoint: Endpoint
) -> None:
    judge(exchanges, "organisation", endpoint)
