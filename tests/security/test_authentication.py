"""OWASP API2 (broken authentication): every forged, stale or misplaced credential is refused
with 401 on every protected route, and the routes that take no token check what they take.

Account lockout, per-address throttling of sign-in and refresh-token reuse are tested where
sign-in lives (tests/integration/identity/test_owasp_api_top10.py, test_sessions.py and
tests/unit/identity/); this module does not repeat them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.notifications.notifier import link_key
from medcloud.notifications.signing import sign_link
from medcloud.platform.security import TokenKeys
from tests.conftest import ADMIN_EMAIL
from tests.security import routes
from tests.security.conftest import Deployment
from tests.support.cast import PASSWORD

pytestmark = pytest.mark.asyncio(loop_scope="package")


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forgeries(deployment: Deployment) -> dict[str, dict[str, str]]:
    """Authorization headers an attacker might present, by name; none may open anything."""
    keys: TokenKeys = deployment.api.app.state.runtime.tokens.keys
    ours = keys.private_key
    assert ours is not None
    genuine = deployment.cast.tokens["carol_clinician"]
    claims: dict[str, Any] = jwt.decode(genuine, options={"verify_signature": False})
    now = int(dt.datetime.now(dt.UTC).timestamp())
    stranger = Ed25519PrivateKey.generate()
    public_key = base64.urlsafe_b64decode(keys.jwks()["keys"][0]["x"] + "==")
    head, _, signature = genuine.split(".")

    def signed(payload: dict[str, Any], key: Ed25519PrivateKey = ours, **headers: Any) -> str:
        return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": keys.kid} | headers)

    def hs256(secret: bytes) -> str:
        signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': keys.kid})}.{b64(claims)}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    tokens = {
        "alg none": f"{b64({'alg': 'none', 'kid': keys.kid})}.{b64(claims)}.",
        "alg None, signature kept": (
            f"{b64({'alg': 'None', 'kid': keys.kid})}.{b64(claims)}.{signature}"
        ),
        "HS256 keyed with the public key": hs256(public_key),
        "HS256 keyed with the JWKS x": hs256(keys.jwks()["keys"][0]["x"].encode()),
        "expired": signed(claims | {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "not valid yet": signed(claims | {"nbf": now + 3600, "exp": now + 7200}),
        "another audience": signed(claims | {"aud": "another-api"}),
        "another issuer": signed(claims | {"iss": "https://issuer.example"}),
        "no expiry": signed({k: v for k, v in claims.items() if k != "exp"}),
        "a refresh token's type": signed(claims | {"typ": "refresh"}),
        "a role that does not exist": signed(claims | {"role": "superuser"}),
        "another key under our kid": jwt.encode(
            claims, stranger, algorithm="EdDSA", headers={"kid": keys.kid}
        ),
        "another key and kid": jwt.encode(
            claims, stranger, algorithm="EdDSA", headers={"kid": "x"}
        ),
        "no kid": jwt.encode(claims, ours, algorithm="EdDSA"),
        "a jku to follow": signed(claims, stranger, jku="http://127.0.0.1:9/jwks.json"),
        "an embedded jwk": signed(claims, stranger, jwk={"kty": "OKP", "crv": "Ed25519", "x": "A"}),
        "role raised, signature kept": f"{head}.{b64(claims | {'role': 'admin'})}.{signature}",
        "organisation changed, signature kept": f"{head}.{b64(claims | {'org': 'x'})}.{signature}",
        "a device token that was never issued": "mcd_" + secrets.token_urlsafe(32),
        "garbage": "not.a.token",
    }
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    headers["Basic, not Bearer"] = {"Authorization": f"Basic {genuine}"}
    headers["Bearer and nothing"] = {"Authorization": "Bearer "}
    headers["a token twice"] = {"Authorization": f"Bearer {genuine} {genuine}"}
    return headers


def names() -> list[str]:
    """Names of the forgeries, for test ids (they need no deployment to be named)."""
    return [
        "alg none",
        "alg None, signature kept",
        "HS256 keyed with the public key",
        "HS256 keyed with the JWKS x",
        "expired",
        "not valid yet",
        "another audience",
        "another issuer",
        "no expiry",
        "a refresh token's type",
        "a role that does not exist",
        "another key under our kid",
        "another key and kid",
        "no kid",
        "a jku to follow",
        "an embedded jwk",
        "role raised, signature kept",
        "organisation changed, signature kept",
        "a device token that was never issued",
        "garbage",
        "Basic, not Bearer",
        "Bearer and nothing",
        "a token twice",
    ]


# Forgeries tried on every protected route, so that no route takes a token's word for itself;
# the rest on one route of each kind (the token is checked in one place, reached several ways).
EVERYWHERE = {"alg none", "another key under our kid", "expired", "role raised, signature kept"}

Answers = dict[str, list[tuple[routes.Endpoint, httpx.Response]]]


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def answers(deployment: Deployment) -> AsyncIterator[Answers]:
    """Every forgery sent to its routes, many at once; answers by forgery."""
    headers = forgeries(deployment)
    assert set(headers) == set(names())
    plan = [
        (name, endpoint)
        for name in names()
        for endpoint in (routes.protected() if name in EVERYWHERE else routes.one_of_each_kind())
    ]
    slots = asyncio.Semaphore(64)

    async def call(name: str, endpoint: routes.Endpoint) -> httpx.Response:
        [probe, *_] = routes.probes(endpoint, deployment.ours)
        async with slots:
            return await routes.request(
                deployment.api.http,
                endpoint.method,
                probe.url,
                body=probe.body,
                headers=headers[name],
            )

    found: Answers = {name: [] for name in names()}
    sent = await asyncio.gather(*(call(name, endpoint) for name, endpoint in plan))
    for (name, endpoint), response in zip(plan, sent, strict=True):
        found[name].append((endpoint, response))
    yield found


@pytest.mark.parametrize("forgery", names())
async def test_a_forged_or_stale_token_gets_401(answers: Answers, forgery: str) -> None:
    wrong = [
        f"{endpoint}: {response.status_code} {response.text[:200]}"
        for endpoint, response in answers[forgery]
        if response.status_code != 401
    ]
    assert answers[forgery]
    assert wrong == []


async def test_the_genuine_token_the_forgeries_start_from_is_accepted(
    deployment: Deployment,
) -> None:
    # Every forgery above is carol's token changed in one way: unchanged, it works.
    response = await deployment.api.http.get(
        "/api/v1/patients", headers=deployment.cast.auth("carol_clinician")
    )
    assert response.status_code == 200


async def test_a_token_in_the_query_string_or_a_cookie_is_not_a_credential(
    deployment: Deployment,
) -> None:
    token = deployment.cast.tokens["alice_admin"]
    http = deployment.api.http
    in_query = await http.get("/api/v1/patients", params={"access_token": token})
    in_cookie = await http.get("/api/v1/patients", headers={"Cookie": f"access_token={token}"})
    assert (in_query.status_code, in_cookie.status_code) == (401, 401)


async def test_a_refresh_token_is_no_access_token_and_an_access_token_refreshes_nothing(
    deployment: Deployment,
) -> None:
    http = deployment.api.http
    session = await http.post(
        "/api/v1/auth/token",
        data={"username": "nina_nurse@stmary.example", "password": PASSWORD},
    )
    assert session.status_code == 200, session.text
    refresh, access = session.json()["refresh_token"], session.json()["access_token"]
    as_access = await http.get("/api/v1/patients", headers={"Authorization": f"Bearer {refresh}"})
    as_refresh = await http.post("/api/v1/auth/refresh", json={"refresh_token": access})
    guessed = await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": "mcr_" + secrets.token_urlsafe(32)}
    )
    assert as_access.status_code == guessed.status_code == 401
    assert as_refresh.status_code in (401, 422)


async def test_a_wrong_password_and_an_unknown_account_are_answered_alike(
    deployment: Deployment,
) -> None:
    # The answer must not tell an attacker which emails have accounts (user enumeration).
    http = deployment.api.http
    wrong = await http.post(
        "/api/v1/auth/token",
        data={"username": "tess_technician@stmary.example", "password": "not-the-passphrase"},
    )
    unknown = await http.post(
        "/api/v1/auth/token",
        data={"username": "nobody@stmary.example", "password": "not-the-passphrase"},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "WWW-Authenticate" in wrong.headers


async def test_mfa_enrolment_needs_the_password(deployment: Deployment) -> None:
    response = await deployment.api.http.post(
        "/api/v1/auth/mfa/enrol", data={"username": ADMIN_EMAIL, "password": "a-wrong-passphrase"}
    )
    assert response.status_code == 401
    assert "secret" not in response.text


async def test_an_invitation_that_was_never_issued_admits_no_one(deployment: Deployment) -> None:
    response = await deployment.api.http.post(
        "/api/v1/auth/invitations/accept",
        json={"token": secrets.token_urlsafe(32), "password": "a-long-enough-passphrase-43"},
    )
    assert response.status_code in (400, 401, 403, 404, 410, 422), response.text


@pytest.mark.parametrize(
    "token",
    ["", "x", "not.signed", "A" * 4000, "eyJhIjoiMSJ9.AAAA"],
    ids=["empty", "short", "unsigned", "huge", "wrong mac"],
)
async def test_an_acknowledge_link_that_was_not_signed_by_us_acknowledges_nothing(
    deployment: Deployment, token: str
) -> None:
    response = await deployment.api.http.post(
        "/api/v1/notifications/acknowledge", params={"token": token}
    )
    assert response.status_code in (403, 422), response.text


async def test_an_acknowledge_link_signed_with_another_key_or_expired_acknowledges_nothing(
    deployment: Deployment,
) -> None:
    ours = deployment.ours
    claims = {"alert_id": ours.ids["alert_id"], "user_id": ours.ids["user_id"]}
    future = int(dt.datetime.now(dt.UTC).timestamp()) + 600
    foreign = sign_link(secrets.token_bytes(32), **claims, expires_at=future, nonce="n1")
    expired = sign_link(
        link_key(deployment.settings), **claims, expires_at=future - 1200, nonce="n2"
    )
    for token in (foreign, expired):
        response = await deployment.api.http.post(
            "/api/v1/notifications/acknowledge", params={"token": token}
        )
        assert response.status_code == 403, response.text
    alarm = await deployment.api.http.get(
        f"/api/v1/alerts/{ours.ids['alert_id']}", headers=deployment.cast.auth(ours.clinician)
    )
    assert alarm.json()["acknowledged_at"] is None
