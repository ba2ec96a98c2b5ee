"""The dashboard as a client of the API: sessions in cookies, CSRF, and the API's refusals."""

from __future__ import annotations

import re

import httpx
import pyotp
import pytest

from medcloud.bootstrap import ALL_CONTEXTS
from medcloud.config import Settings
from medcloud.platform.security import ACCESS_COOKIE
from medcloud.web.session import CSRF_COOKIE, REFRESH_COOKIE
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.cast import PASSWORD, Cast
from tests.support.client import Api, bearer, reading, running

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(api: Api, email: str, password: str = PASSWORD) -> httpx.Response:
    form = await api.http.get("/sign-in")
    return await api.http.post(
        "/sign-in",
        data={"email": email, "password": password, "csrf": csrf_of(form), "next": "/"},
    )


async def test_a_page_without_a_session_sends_the_browser_to_sign_in(api: Api) -> None:
    response = await api.http.get("/alarms?state=active")

    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/alarms%3Fstate%3Dactive"


async def test_signing_in_keeps_the_tokens_in_strict_http_only_cookies(
    api: Api, cast: Cast
) -> None:
    response = await sign_in(api, "carol_clinician@stmary.example")

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookies = response.headers.get_list("set-cookie")
    for name in (ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE):
        cookie = next(c for c in cookies if c.startswith(f"{name}="))
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
    overview = await api.http.get("/")
    assert overview.status_code == 200
    assert "Cardiology" in overview.text
    assert cast.patients["peter"]["family_name"] in overview.text
    assert "default-src 'self'" in overview.headers["content-security-policy"]


async def test_a_wrong_password_is_refused_on_the_form(api: Api, cast: Cast) -> None:
    response = await sign_in(api, "carol_clinician@stmary.example", "not-the-password")

    assert response.status_code == 401
    assert "not accepted" in response.text
    assert ACCESS_COOKIE not in api.http.cookies


async def test_a_form_post_without_the_csrf_token_is_refused(api: Api, cast: Cast) -> None:
    await sign_in(api, "carol_clinician@stmary.example")
    await api.send(cast.devices["peters_oximeter"], reading(heart_rate=190))
    [alarm] = await api.wait_for_alerts(cast.tokens["carol_clinician"], 1)

    forged = await api.http.post(f"/alarms/{alarm['id']}/acknowledge", data={"csrf": "guess"})

    assert forged.status_code == 403
    after = await api.http.get(
        f"/api/v1/alerts/{alarm['id']}", headers=cast.auth("carol_clinician")
    )
    assert after.json()["state"] == "active"


async def test_acknowledging_from_the_page_goes_through_the_api(api: Api, cast: Cast) -> None:
    await sign_in(api, "carol_clinician@stmary.example")
    await api.send(cast.devices["peters_oximeter"], reading(heart_rate=190))
    [alarm] = await api.wait_for_alerts(cast.tokens["carol_clinician"], 1)
    page = await api.http.get("/alarms")

    response = await api.http.post(
        f"/alarms/{alarm['id']}/acknowledge", data={"csrf": csrf_of(page), "next": "/alarms"}
    )

    assert response.status_code == 303
    after = await api.http.get(
        f"/api/v1/alerts/{alarm['id']}", headers=cast.auth("carol_clinician")
    )
    assert after.json()["state"] == "acknowledged"
    assert after.json()["acknowledged_by"] == cast.user_ids["carol_clinician"]


async def test_a_clinician_of_another_ward_gets_the_apis_404_on_a_patient_page(
    api: Api, cast: Cast
) -> None:
    await sign_in(api, "bob_other_ward@stmary.example")

    response = await api.http.get(f"/patients/{cast.patients['peter']['id']}")

    assert response.status_code == 404
    assert cast.patients["peter"]["family_name"] not in response.text


async def test_the_patient_page_shows_the_patients_vitals(api: Api, cast: Cast) -> None:
    await sign_in(api, "carol_clinician@stmary.example")
    await api.send(cast.devices["peters_oximeter"], reading(heart_rate=72, spo2=97))

    response = await api.http.get(f"/patients/{cast.patients['peter']['id']}")

    assert response.status_code == 200
    assert 'id="chart-heart_rate"' in response.text
    assert 'id="chart-spo2"' in response.text


async def test_signing_out_revokes_the_refresh_token(api: Api, cast: Cast) -> None:
    await sign_in(api, "carol_clinician@stmary.example")
    refresh = api.http.cookies[REFRESH_COOKIE]
    page = await api.http.get("/")

    response = await api.http.post("/sign-out", data={"csrf": csrf_of(page)})

    assert response.status_code == 303
    assert ACCESS_COOKIE not in api.http.cookies
    again = await api.http.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert again.status_code == 401


async def test_an_expired_access_token_is_renewed_with_the_refresh_token(
    api: Api, cast: Cast
) -> None:
    await sign_in(api, "carol_clinician@stmary.example")
    [kept] = [c for c in api.http.cookies.jar if c.name == ACCESS_COOKIE]
    api.http.cookies.set(ACCESS_COOKIE, "not-a-valid-token", domain=kept.domain)

    response = await api.http.get("/")

    assert response.status_code == 200
    assert api.http.cookies[ACCESS_COOKIE] != "not-a-valid-token"
    me = await api.http.get("/api/v1/users/me", headers=bearer(api.http.cookies[ACCESS_COOKIE]))
    assert me.json()["email"] == "carol_clinician@stmary.example"


async def test_pages_are_outside_the_api_schema_and_unknown_api_paths_stay_problems(
    api: Api, cast: Cast
) -> None:
    await sign_in(api, "carol_clinician@stmary.example")

    unknown = await api.http.get("/api/v1/no-such-thing")

    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    schema = await api.http.get("/openapi.json", headers=cast.auth("alice_admin"))
    assert not any(
        not path.startswith(("/api", "/fhir", "/.well-known", "/health", "/ready", "/metrics"))
        for path in schema.json()["paths"]
    )


async def test_silencing_from_the_page_goes_through_the_api(api: Api, cast: Cast) -> None:
    await sign_in(api, "nina_nurse@stmary.example")
    await api.send(cast.devices["peters_oximeter"], reading(heart_rate=190))
    [alarm] = await api.wait_for_alerts(cast.tokens["nina_nurse"], 1)
    page = await api.http.get(f"/patients/{cast.patients['peter']['id']}")

    response = await api.http.post(
        f"/alarms/{alarm['id']}/silence",
        data={"csrf": csrf_of(page), "seconds": "120", "next": "/"},
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    after = await api.http.get(f"/api/v1/alerts/{alarm['id']}", headers=cast.auth("nina_nurse"))
    assert after.json()["silenced_until"] is not None


async def test_a_fragment_refresh_without_a_session_moves_the_whole_page(api: Api) -> None:
    response = await api.http.get("/", headers={"HX-Request": "true"})

    assert response.headers["hx-redirect"] == "/sign-in?next=/"


async def test_a_user_with_two_factor_sign_in_needs_the_one_time_code(api: Api, cast: Cast) -> None:
    creds = {"username": "carol_clinician@stmary.example", "password": PASSWORD}
    secret = (await api.http.post("/api/v1/auth/mfa/enrol", data=creds)).json()["secret"]
    form = await api.http.get("/sign-in")
    fields = {"email": creds["username"], "password": PASSWORD, "csrf": csrf_of(form)}

    without = await api.http.post("/sign-in", data=fields)
    with_code = await api.http.post("/sign-in", data=fields | {"totp": pyotp.TOTP(secret).now()})

    assert without.status_code == 401
    assert with_code.status_code == 303
    assert (await api.http.get("/")).status_code == 200


async def test_a_campaign_is_paused_and_resumed_from_the_devices_page(api: Api, cast: Cast) -> None:
    await sign_in(api, "tess_technician@stmary.example")
    campaign_id = cast.firmware["campaign_id"]
    page = await api.http.get("/devices")
    assert "PulseOx 2 to 1.1.0" in page.text
    assert f'action="/campaigns/{campaign_id}/pause"' in page.text

    paused = await api.http.post(f"/campaigns/{campaign_id}/pause", data={"csrf": csrf_of(page)})
    after_pause = await api.http.get("/devices")
    resumed = await api.http.post(
        f"/campaigns/{campaign_id}/resume", data={"csrf": csrf_of(after_pause)}
    )

    assert (paused.status_code, resumed.status_code) == (303, 303)
    assert f'action="/campaigns/{campaign_id}/resume"' in after_pause.text
    campaign = await api.http.get(
        f"/api/v1/campaigns/{campaign_id}", headers=cast.auth("tess_technician")
    )
    assert campaign.json()["status"] == "running"


async def test_a_nurse_sees_no_audit_log_but_the_apis_refusal(api: Api, cast: Cast) -> None:
    await sign_in(api, "nina_nurse@stmary.example")

    response = await api.http.get("/audit")

    assert response.status_code == 403
    assert "Verify the hash chain" not in response.text


async def test_the_reports_page_says_so_where_the_server_has_no_reports(
    settings: Settings,
) -> None:
    without_reports = [c for c in ALL_CONTEXTS if c != "reports"]
    async with running(settings, contexts=without_reports) as api:
        await sign_in(api, ADMIN_EMAIL, ADMIN_PASSWORD)

        response = await api.http.get("/reports")

    assert response.status_code == 200
    assert "not available on this server yet" in response.text
