"""The OWASP API Security Top 10 (2023), one or more tests per risk, with the named cast."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.identity import repository
from medcloud.platform.clock import FrozenClock
from medcloud.platform.security import TokenKeys, verify_password
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.cast import PASSWORD, Cast
from tests.support.client import Api, bearer, reading, running


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# API1: broken object level authorisation --------------------------------------------------------


async def test_api1_objects_of_another_organisation_answer_404(api: Api, cast: Cast) -> None:
    theirs = cast.devices["mallorys_device"]
    patient = cast.patients["mallorys_patient"]
    alice = cast.auth("alice_admin")
    for path in (
        f"/api/v1/devices/{theirs['id']}",
        f"/api/v1/devices/{theirs['id']}/data",
        f"/api/v1/patients/{patient['id']}",
    ):
        response = await api.http.get(path, headers=alice)
        assert response.status_code == 404, path
    missing = await api.http.get(
        "/api/v1/patients/00000000-0000-0000-0000-000000000000", headers=alice
    )
    assert (
        missing.json()["detail"]
        == (await api.http.get(f"/api/v1/patients/{patient['id']}", headers=alice)).json()["detail"]
    )


async def test_api1_a_device_cannot_write_another_devices_data(api: Api, cast: Cast) -> None:
    peters = cast.devices["peters_oximeter"]
    response = await api.http.post(
        f"/api/v1/devices/{peters['id']}/data",
        json=reading(heart_rate=150),
        headers=cast.auth("mallorys_device"),
    )
    assert response.status_code == 403


async def test_api1_a_device_cannot_be_assigned_another_organisations_patient(
    api: Api, cast: Cast
) -> None:
    response = await api.http.post(
        "/api/v1/devices",
        json={
            "serial_number": "X-1",
            "model": "m",
            "manufacturer": "x",
            "patient_id": cast.patients["mallorys_patient"]["id"],
        },
        headers=cast.auth("alice_admin"),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "patient_id"


# API2: broken authentication --------------------------------------------------------------------


@pytest.fixture
def forged(api: Api, cast: Cast) -> dict[str, str]:
    """Every kind of token an attacker might present, by name."""
    keys: TokenKeys = api.app.state.runtime.tokens.keys
    assert keys.private_key is not None
    signing_key = keys.private_key
    genuine = cast.tokens["carol_clinician"]
    claims = claims_of(genuine)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    stranger = Ed25519PrivateKey.generate()
    public_pem = keys.jwks()["keys"][0]["x"].encode()

    def signed(payload: dict[str, Any], key: Any = None, **headers: Any) -> str:
        return jwt.encode(
            payload, key or signing_key, algorithm="EdDSA", headers={"kid": keys.kid} | headers
        )

    import hashlib
    import hmac

    hs_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': keys.kid})}.{b64(claims)}"
    hs_signature = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    return {
        "alg none": f"{b64({'alg': 'none', 'kid': keys.kid})}.{b64(claims)}.",
        "HS256 with the public key": f"{hs_input}.{b64(hs_signature)}",
        "expired": signed(claims | {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "not yet valid": signed(claims | {"nbf": now + 3600, "exp": now + 7200}),
        "wrong audience": signed(claims | {"aud": "another-api"}),
        "wrong issuer": signed(claims | {"iss": "someone-else"}),
        "another key": jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": keys.kid}),
        "tampered role": ".".join(
            [genuine.split(".")[0], b64(claims | {"role": "admin"}), genuine.split(".")[2]]
        ),
        "refresh token as access token": cast.tokens.get("carol_refresh", "mcr_" + "x" * 43),
        "jku pointing elsewhere": signed(claims, key=stranger, jku="http://127.0.0.1:9/jwks"),
        "no kid": jwt.encode(claims, signing_key, algorithm="EdDSA"),
        "garbage": "not-a-token",
    }


async def test_api2_every_token_attack_gets_401(
    api: Api, cast: Cast, forged: dict[str, str]
) -> None:
    session = await api.http.post(
        "/api/v1/auth/token",
        data={"username": "carol_clinician@stmary.example", "password": PASSWORD},
    )
    forged["refresh token as access token"] = session.json()["refresh_token"]
    for name, token in forged.items():
        response = await api.http.get("/api/v1/patients", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.headers["content-type"].startswith("application/problem+json"), name
    genuine = await api.http.get("/api/v1/patients", headers=cast.auth("carol_clinician"))
    assert genuine.status_code == 200


async def test_api2_login_throttling_holds_against_1000_parallel_wrong_passwords(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[tuple[str, str]] = []
    real_verify = verify_password

    async def recording_verify(password_hash: str, password: str) -> bool:
        checked.append((password_hash, password))
        return await real_verify(password_hash, password)

    monkeypatch.setattr("medcloud.identity.sessions.verify_password", recording_verify)
    statuses: dict[int, int] = {}
    limit = asyncio.Semaphore(50)
    # Frozen, so no wait runs out while the flood lasts.
    clock = FrozenClock(dt.datetime.now(dt.UTC))

    async with running(settings, runtime=bootstrap(settings, clock=clock)) as api:

        async def attempt(address: str, password: str) -> httpx.Response:
            transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.post(
                    "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": password}
                )

        async def guess(n: int) -> None:
            # Twenty addresses, so the per-address limits alone cannot stop them.
            async with limit:
                response = await attempt(f"10.9.0.{n % 20}", f"guess-number-{n:04d}")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        assert (await attempt("10.1.0.5", ADMIN_PASSWORD)).status_code == 200  # alice's desk
        await asyncio.wait_for(asyncio.gather(*(guess(n) for n in range(1000))), timeout=240)

        async with api.app.state.runtime.uow() as uow:
            admin = await repository.get_user_by_email(uow.session, ADMIN_EMAIL)
        assert admin is not None and admin.password_hash is not None
        assert sum(statuses.values()) == 1000
        assert set(statuses) <= {401, 429}
        # Only the account's ceiling of guesses ever met its password; every other refusal
        # was answered alike after a dummy hash, or with 429 before any.
        guesses = [p for h, p in checked if h == admin.password_hash and p.startswith("guess")]
        assert len(guesses) == settings.identity.account_failures_before_wait
        # The right password waits on a new address, but not where alice signed in before.
        assert (await attempt("10.9.1.1", ADMIN_PASSWORD)).status_code == 401
        assert (await attempt("10.1.0.5", ADMIN_PASSWORD)).status_code == 200


async def test_api2_one_address_is_throttled_with_retry_after(api: Api) -> None:
    limit = api.app.state.runtime.settings.identity.address_failures_per_window
    for n in range(limit):
        await api.http.post(
            "/api/v1/auth/token", data={"username": f"nobody{n}@x.example", "password": "w" * 12}
        )
    response = await api.http.post(
        "/api/v1/auth/token", data={"username": "nobody@x.example", "password": "w" * 12}
    )
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


# API3: broken object property level authorisation ------------------------------------------------


@pytest.mark.parametrize("field", ["role", "organisation_id", "is_admin", "id"])
async def test_api3_mass_assignment_changes_nothing(api: Api, cast: Cast, field: str) -> None:
    value: Any = "admin" if field == "role" else "attacker-value"
    device = await api.http.post(
        "/api/v1/devices",
        json={"serial_number": "MA-1", "model": "m", "manufacturer": "x", field: value},
        headers=cast.auth("tess_technician"),
    )
    assert device.status_code == 422
    patient = await api.http.post(
        "/api/v1/patients",
        json={
            "identifier_system": "urn:x",
            "identifier_value": "MA",
            "family_name": "A",
            "given_name": "B",
            "birth_date": "2000-01-01",
            field: value,
        },
        headers=cast.auth("carol_clinician"),
    )
    assert patient.status_code == 422
    me_before = (await api.http.get("/api/v1/users/me", headers=cast.auth("nina_nurse"))).json()
    update = await api.http.patch(
        f"/api/v1/users/{cast.user_ids['nina_nurse']}",
        json={field: value},
        headers=cast.auth("nina_nurse"),
    )
    assert update.status_code in (403, 422)
    me_after = (await api.http.get("/api/v1/users/me", headers=cast.auth("nina_nurse"))).json()
    assert me_after == me_before


async def test_api3_responses_never_carry_secrets(api: Api, cast: Cast) -> None:
    alice = cast.auth("alice_admin")
    bodies = [
        (await api.http.get("/api/v1/users", headers=alice)).text,
        (await api.http.get("/api/v1/users/me", headers=alice)).text,
        (await api.http.get("/api/v1/devices", headers=alice)).text,
        (
            await api.http.get(
                f"/api/v1/devices/{cast.devices['peters_oximeter']['id']}", headers=alice
            )
        ).text,
    ]
    for body in bodies:
        for secret in ("password_hash", "token_hash", "totp_secret", "$argon2", "mcd_"):
            assert secret not in body


# API4: unrestricted resource consumption ---------------------------------------------------------


async def test_api4_pages_and_bodies_are_bounded(api: Api, cast: Cast) -> None:
    alice = cast.auth("alice_admin")
    assert (await api.http.get("/api/v1/alerts?limit=100000", headers=alice)).status_code == 422
    assert (await api.http.get("/api/v1/patients?limit=0", headers=alice)).status_code == 422
    device = cast.devices["peters_oximeter"]
    huge = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=b"{" + b" " * (11 * 1024 * 1024) + b"}",
        headers=cast.auth("peters_oximeter") | {"content-type": "application/json"},
    )
    assert huge.status_code == 413


# API5: broken function level authorisation -----------------------------------------------------


async def test_api5_functions_are_refused_to_roles_without_them(api: Api, cast: Cast) -> None:
    cases = [
        ("carol_clinician", "POST", "/api/v1/users", {"email": "x@y.example", "role": "admin"}),
        ("nina_nurse", "POST", "/api/v1/wards", {"name": "Shadow ward"}),
        ("tess_technician", "GET", "/api/v1/alerts", None),
        ("audrey_auditor", "GET", "/api/v1/patients", None),
        (
            "carol_clinician",
            "POST",
            "/api/v1/devices",
            {"serial_number": "F5", "model": "m", "manufacturer": "x"},
        ),
    ]
    for who, method, path, body in cases:
        response = await api.http.request(method, path, json=body, headers=cast.auth(who))
        assert response.status_code == 403, (who, path)


# API6: unrestricted access to sensitive business flows -----------------------------------------


async def test_api6_break_glass_needs_a_reason_and_expires(api: Api, cast: Cast) -> None:
    olive = cast.patients["olive"]
    for reason in ("", "because"):
        refused = await api.http.post(
            f"/api/v1/patients/{olive['id']}/break-glass",
            json={"reason": reason},
            headers=cast.auth("carol_clinician"),
        )
        assert refused.status_code == 422
    granted = await api.http.post(
        f"/api/v1/patients/{olive['id']}/break-glass",
        json={"reason": "rapid response call, covering Oncology tonight"},
        headers=cast.auth("carol_clinician"),
    )
    body = granted.json()
    lasts = dt.datetime.fromisoformat(body["expires_at"]) - dt.datetime.fromisoformat(
        body["granted_at"]
    )
    assert lasts == dt.timedelta(
        minutes=api.app.state.runtime.settings.identity.break_glass_minutes
    )


# API7: server-side request forgery -----------------------------------------------------------


async def test_api7_no_request_makes_the_server_fetch_a_url(api: Api, cast: Cast) -> None:
    # The only outbound fetch is the JWKS of a verify-only service, and its URL comes from
    # configuration. A token's own `jku`/`x5u` headers are never followed.
    keys: TokenKeys = api.app.state.runtime.tokens.keys
    claims = claims_of(cast.tokens["carol_clinician"])
    for header in ({"jku": "http://127.0.0.1:1/keys"}, {"x5u": "http://127.0.0.1:1/cert"}):
        token = jwt.encode(
            claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "x"} | header
        )
        response = await api.http.get("/api/v1/patients", headers=bearer(token))
        assert response.status_code == 401
    assert keys.kid  # the genuine key set is untouched
    url_fields = [
        (schema_name, name)
        for schema_name, schema in api.app.openapi()["components"]["schemas"].items()
        for name, prop in schema.get("properties", {}).items()
        if prop.get("format") == "uri"
    ]
    # The one URL the server calls is a webhook an admin registers: never this machine, the
    # cloud's metadata service or another link-local address.
    assert url_fields == [("WebhookIn", "url")]
    for target in (
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:5432/",
        "http://localhost/admin",
        "http://[::1]/",
        "http://0.0.0.0/",
    ):
        response = await api.http.post(
            "/api/v1/webhooks", json={"url": target}, headers=cast.auth("alice_admin")
        )
        assert response.status_code == 422, (target, response.text)


# API8: security misconfiguration ---------------------------------------------------------------


async def test_api8_responses_are_hardened_and_errors_reveal_nothing(api: Api) -> None:
    response = await api.http.get("/api/v1/patients")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    broken = await api.http.post(
        "/api/v1/auth/token", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert broken.status_code in (400, 422)
    assert "Traceback" not in broken.text and 'File "' not in broken.text
    assert "access-control-allow-origin" not in response.headers


# API9: improper inventory management -----------------------------------------------------------


async def test_api9_every_route_is_documented_and_versioned(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    public_ops = {"/health", "/ready", "/metrics", "/.well-known/jwks.json"}
    for path in paths:
        # The FHIR API is versioned by the FHIR release it speaks.
        assert path.startswith(("/api/v1/", "/fhir/r4/")) or path in public_ops, path
    assert (await api.http.get("/health")).headers["x-service-version"].startswith("medcloud/")


# API10: unsafe consumption of APIs ---------------------------------------------------------------


def test_api10_a_consumed_jwks_yields_only_ed25519_keys() -> None:
    jwks = {
        "keys": [
            {"kty": "oct", "k": b64(b"shared-secret"), "kid": "hmac"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "OKP", "crv": "X25519", "x": b64(b"\x01" * 32), "kid": "x25519"},
        ]
    }
    assert TokenKeys.from_jwks(jwks).public_keys == {}


async def test_api10_device_input_is_validated_like_any_other(api: Api, cast: Cast) -> None:
    device = cast.devices["peters_oximeter"]
    response = await api.send(
        device, {"timestamp": "2026-11-30T10:00:00Z", "measurements": {"heart_rate": 1e308}}
    )
    assert response.status_code == 422
