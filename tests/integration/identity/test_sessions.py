"""Sign-in, sessions and their end: refresh rotation, reuse detection, logout, MFA, invitations."""

from __future__ import annotations

import datetime as dt

import pyotp
from sqlalchemy import update

from medcloud.identity.models import Organisation
from medcloud.platform.clock import FrozenClock
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.cast import PASSWORD, invite
from tests.support.client import Api, bearer, running

LOGIN = {"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}


async def sign_in(api: Api, **overrides: str) -> dict[str, str]:
    response = await api.http.post("/api/v1/auth/token", data=LOGIN | overrides)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def test_sign_in_returns_a_short_access_token_and_a_refresh_token(api: Api) -> None:
    tokens = await sign_in(api)
    assert tokens["token_type"] == "bearer"
    assert int(tokens["expires_in"]) == 15 * 60
    assert tokens["refresh_token"].startswith("mcr_")
    me = await api.http.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email"] == ADMIN_EMAIL


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(api: Api) -> None:
    wrong = await api.http.post("/api/v1/auth/token", data=LOGIN | {"password": "nope-nope-nope"})
    unknown = await api.http.post(
        "/api/v1/auth/token", data={"username": "nobody@example.org", "password": "x" * 14}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_refresh_rotates_and_a_replayed_token_revokes_the_session(api: Api) -> None:
    first = await sign_in(api)
    second = await api.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    rotated = second.json()["refresh_token"]
    assert rotated != first["refresh_token"]

    replay = await api.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 401
    # The thief's replay ended the whole session: the legitimate, rotated token is dead too.
    after = await api.http.post("/api/v1/auth/refresh", json={"refresh_token": rotated})
    assert after.status_code == 401


async def test_logout_revokes_the_session(api: Api) -> None:
    tokens = await sign_in(api)
    out = await api.http.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert out.status_code == 204
    again = await api.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert again.status_code == 401


async def test_an_idle_session_expires(settings: object) -> None:
    from medcloud.bootstrap import bootstrap
    from medcloud.config import Settings

    assert isinstance(settings, Settings)
    clock = FrozenClock(dt.datetime.now(dt.UTC))
    runtime = bootstrap(settings, clock=clock)
    async with running(settings, runtime=runtime) as api:
        tokens = await sign_in(api)
        clock.advance(minutes=20)
        renewed = await api.http.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert renewed.status_code == 200  # active within the idle window
        clock.advance(minutes=31)
        idle = await api.http.post(
            "/api/v1/auth/refresh", json={"refresh_token": renewed.json()["refresh_token"]}
        )
        assert idle.status_code == 401


async def test_an_invited_user_chooses_a_password_that_meets_the_policy(
    api: Api, alice: str
) -> None:
    invited = await api.http.post(
        "/api/v1/users",
        json={"email": "dora.doctor@stmary.example", "role": "clinician"},
        headers=bearer(alice),
    )
    assert invited.status_code == 201
    token = invited.json()["invitation_token"]
    assert "password_hash" not in invited.text
    for weak in ("short", "aaaaaaaaaaaaaaaa", "password1234", "dora.doctor-is-me-2026"):
        response = await api.http.post(
            "/api/v1/auth/invitations/accept", json={"token": token, "password": weak}
        )
        assert response.status_code == 422, weak
        assert response.json()["errors"][0]["field"] == "password"
    accepted = await api.http.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert accepted.status_code == 204
    reused = await api.http.post(
        "/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD + "x"}
    )
    assert reused.status_code == 404
    await api.token("dora.doctor@stmary.example", PASSWORD)


async def test_a_disabled_user_cannot_sign_in_or_refresh(api: Api, alice: str) -> None:
    await invite(api, alice, "ed.nurse@stmary.example", "nurse", [])
    session = await sign_in(api, username="ed.nurse@stmary.example", password=PASSWORD)
    access = bearer(session["access_token"])
    assert (await api.http.get("/api/v1/users/me", headers=access)).status_code == 200
    users = (await api.http.get("/api/v1/users", headers=bearer(alice))).json()["items"]
    ed = next(u for u in users if u["email"] == "ed.nurse@stmary.example")
    disabled = await api.http.patch(
        f"/api/v1/users/{ed['id']}", json={"is_active": False}, headers=bearer(alice)
    )
    assert disabled.status_code == 200 and disabled.json()["is_active"] is False
    # The access token Ed holds is refused at once, not when it expires.
    revoked = await api.http.get("/api/v1/users/me", headers=access)
    assert revoked.status_code == 401
    assert revoked.headers["content-type"] == "application/problem+json"
    refused = await api.http.post(
        "/api/v1/auth/token", data={"username": "ed.nurse@stmary.example", "password": PASSWORD}
    )
    assert refused.status_code == 401
    refresh = await api.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refresh.status_code == 401


async def test_totp_is_enforced_once_enrolled(api: Api, alice: str) -> None:
    await invite(api, alice, "fay.clinician@stmary.example", "clinician", [])
    creds = {"username": "fay.clinician@stmary.example", "password": PASSWORD}
    enrolment = await api.http.post("/api/v1/auth/mfa/enrol", data=creds)
    assert enrolment.status_code == 200
    secret = enrolment.json()["secret"]
    assert enrolment.json()["otpauth_uri"].startswith("otpauth://totp/")

    without = await api.http.post("/api/v1/auth/token", data=creds)
    assert without.status_code == 401
    wrong = await api.http.post("/api/v1/auth/token", data=creds | {"totp": "000000"})
    assert wrong.status_code == 401
    code = pyotp.TOTP(secret).now()
    ok = await api.http.post("/api/v1/auth/token", data=creds | {"totp": code})
    assert ok.status_code == 200, ok.text
    me = await api.http.get("/api/v1/users/me", headers=bearer(ok.json()["access_token"]))
    assert me.json()["mfa_enabled"] is True


async def test_an_organisation_can_require_a_second_factor_for_admins(api: Api) -> None:
    async with api.app.state.runtime.uow() as uow:
        await uow.session.execute(update(Organisation).values(require_admin_mfa=True))
        await uow.commit()
    refused = await api.http.post("/api/v1/auth/token", data=LOGIN)
    assert refused.status_code == 401
    secret = (await api.http.post("/api/v1/auth/mfa/enrol", data=LOGIN)).json()["secret"]
    ok = await api.http.post("/api/v1/auth/token", data=LOGIN | {"totp": pyotp.TOTP(secret).now()})
    assert ok.status_code == 200


async def test_jwks_publishes_the_verification_keys(api: Api) -> None:
    jwks = (await api.http.get("/.well-known/jwks.json")).json()
    assert jwks["keys"] and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" for k in jwks["keys"])
    assert all("d" not in k for k in jwks["keys"])  # never the private part


async def test_a_new_role_refuses_the_old_token_and_the_refreshed_one_carries_it(
    api: Api, alice: str
) -> None:
    await invite(api, alice, "gus.admin@stmary.example", "admin", [])
    session = await sign_in(api, username="gus.admin@stmary.example", password=PASSWORD)
    old = bearer(session["access_token"])
    assert (await api.http.get("/api/v1/users", headers=old)).status_code == 200
    me = (await api.http.get("/api/v1/users/me", headers=old)).json()
    demoted = await api.http.patch(
        f"/api/v1/users/{me['id']}", json={"role": "auditor"}, headers=bearer(alice)
    )
    assert demoted.status_code == 200, demoted.text
    # The admin role was in the token: it stops working the moment the role is taken away.
    assert (await api.http.get("/api/v1/users", headers=old)).status_code == 401
    renewed = await api.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert renewed.status_code == 200, renewed.text
    new = bearer(renewed.json()["access_token"])
    assert (await api.http.get("/api/v1/users/me", headers=new)).json()["role"] == "auditor"
    assert (await api.http.get("/api/v1/users", headers=new)).status_code == 403
    # Alice's own tokens, and changes to wards alone, revoke nothing.
    assert (await api.http.get("/api/v1/users", headers=bearer(alice))).status_code == 200


async def test_users_are_listed_a_page_at_a_time_each_once(api: Api, alice: str) -> None:
    for name in ("hal", "ida", "jon", "kim"):
        await invite(api, alice, f"{name}.nurse@stmary.example", "nurse", [])
    whole = await api.http.get("/api/v1/users", headers=bearer(alice))
    everyone = [u["id"] for u in whole.json()["items"]]
    assert len(everyone) == 5 and whole.json()["next_cursor"] is None
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = await api.http.get("/api/v1/users", params=params, headers=bearer(alice))
        assert page.status_code == 200, page.text
        seen += [u["id"] for u in page.json()["items"]]
        if page.json()["next_cursor"] is None:
            break
        params["cursor"] = page.json()["next_cursor"]
    assert seen == everyone
    refused = await api.http.get("/api/v1/users", params={"cursor": "x"}, headers=bearer(alice))
    assert refused.status_code == 422
