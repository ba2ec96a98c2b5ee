"""The dashboard's pages: each one the answers of a few API calls, rendered.

Pages hold no business rule: what a user may see and do is what the API answers them (see
`client.py`). A page answers the API's own status when the API refuses (403, 404), and sends
the browser to sign in when it has no session the API accepts. Here: signing in and out,
devices, reports and audit, and the route table; the clinical pages are in `clinical.py`, what
every page shares in `rendering.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from medcloud.web import session
from medcloud.web.client import Api, ApiRefused, Tokens
from medcloud.web.clinical import (
    acknowledge,
    alarms,
    alerts_live,
    patient_live,
    patient_view,
    silence,
    ward_overview,
)
from medcloud.web.rendering import (
    HERE,
    WARD_PAGE,
    Handler,
    api_for,
    me,
    page,
    render,
    utc_now,
)

# --- signing in and out -------------------------------------------------------------------


async def sign_in_form(request: Request) -> Response:
    """The sign-in form."""
    return render(
        request, "sign_in.html", next=session.local_path(request.query_params.get("next"))
    )


async def sign_in(request: Request) -> Response:
    """Exchange email, password and one-time code for the API's tokens, kept in cookies."""
    form = await request.form()
    target = session.local_path(form.get("next"))
    email = str(form.get("email") or "")
    if not session.csrf_ok(request, form.get(session.CSRF_FIELD)):
        return render(
            request,
            "sign_in.html",
            status=403,
            next=target,
            email=email,
            error="The form expired. Please try again.",
        )
    fields = {"username": email, "password": str(form.get("password") or "")}
    totp = str(form.get("totp") or "").strip()
    if totp:
        fields["totp"] = totp
    answer = await api_for(request, None).request("POST", "/api/v1/auth/token", data=fields)
    if answer.status_code != 200:
        refused = ApiRefused.of(answer)
        message = (
            "Too many attempts. Please wait and try again."
            if answer.status_code == 429
            else "Email, password or one-time code not accepted."
        )
        return render(
            request,
            "sign_in.html",
            status=refused.status if refused.status in (400, 401, 403, 422, 429) else 401,
            next=target,
            email=email,
            error=message,
        )
    body = answer.json()
    response = RedirectResponse(target, status_code=303)
    session.keep_tokens(response, request, Tokens(body["access_token"], body["refresh_token"]))
    # A new session gets a CSRF token of its own (no token fixed before sign-in is kept).
    session.keep_csrf(response, request, fresh=True)
    return response


async def sign_out(request: Request) -> Response:
    """End the session at the API (revoking the refresh token) and forget the cookies."""
    form = await request.form()
    response = RedirectResponse("/sign-in", status_code=303)
    if not session.csrf_ok(request, form.get(session.CSRF_FIELD)):
        return render(
            request, "error.html", status=403, title="Form expired", detail="Please try again."
        )
    tokens = session.tokens_of(request)
    if tokens is not None and tokens.refresh:
        await api_for(request, tokens, may_renew=False).request(
            "POST", "/api/v1/auth/logout", json={"refresh_token": tokens.refresh}
        )
    session.forget_tokens(response, request)
    return response


# --- devices ------------------------------------------------------------------------------


async def devices(request: Request, api: Api) -> Response:
    """Devices with status, battery, last contact and firmware; firmware campaigns."""
    user = await me(request, api)
    page_, campaigns = await asyncio.gather(
        api.get("/api/v1/devices", limit=200), api.get_or_none("/api/v1/campaigns")
    )
    return render(
        request,
        "devices.html",
        user=user,
        devices=page_["items"],
        campaigns=None if campaigns is None else campaigns["items"],
    )


def _campaign_action(action: str) -> Handler:
    async def handler(request: Request, api: Api) -> Response:
        await api.post(f"/api/v1/campaigns/{request.path_params['campaign_id']}/{action}")
        return RedirectResponse("/devices#campaigns", status_code=303)

    return handler


# --- reports ------------------------------------------------------------------------------


async def reports(request: Request, api: Api) -> Response:
    """Reports with their downloads, and a form to generate one now."""
    user = await me(request, api)
    cursor = request.query_params.get("cursor")
    response = await api.request(
        "GET", "/api/v1/reports", params={"limit": 20, **({"cursor": cursor} if cursor else {})}
    )
    # Until the reports API is deployed the path is unknown to the API: say so, not an error.
    if response.status_code == 404:
        available, items, next_cursor = False, [], None
    elif response.status_code >= 400:
        raise ApiRefused.of(response)
    else:
        body = response.json()
        available, items, next_cursor = True, body["items"], body.get("next_cursor")
    wards, patients = await asyncio.gather(
        api.get("/api/v1/wards"), api.get("/api/v1/patients", limit=WARD_PAGE)
    )
    return render(
        request,
        "reports.html",
        user=user,
        available=available,
        reports=items,
        next_cursor=next_cursor,
        wards=wards["items"],
        patients=patients["items"],
        today=utc_now().date().isoformat(),
    )


async def generate_report(request: Request, api: Api) -> Response:
    """Ask the API for a report now."""
    form = await request.form()
    scope = str(form.get("scope") or "organisation")
    body: dict[str, Any] = {"scope": scope, "day": str(form.get("day") or utc_now().date())}
    if scope == "ward":
        body["ward_id"] = str(form.get("ward_id") or "")
    if scope == "patient":
        body["patient_id"] = str(form.get("patient_id") or "")
    await api.post("/api/v1/reports", json=body)
    return RedirectResponse("/reports", status_code=303)


# --- audit --------------------------------------------------------------------------------


async def audit(request: Request, api: Api) -> Response:
    """The audit log, newest first, and (on request) verification of its hash chain."""
    user = await me(request, api)
    cursor = request.query_params.get("cursor")
    entries = await api.get("/api/v1/audit", limit=50, cursor=cursor)
    verification = None
    if request.query_params.get("verify"):
        verification = await api.get("/api/v1/audit/verify")
    return render(
        request,
        "audit.html",
        user=user,
        entries=entries["items"],
        next_cursor=entries.get("next_cursor"),
        verification=verification,
    )


def routes() -> list[BaseRoute]:
    """The dashboard's routes: plain Starlette routes, outside the API's OpenAPI and route table."""
    return [
        Route("/", page(ward_overview), methods=["GET"], name="web.ward"),
        Route("/sign-in", sign_in_form, methods=["GET"], name="web.sign_in_form"),
        Route("/sign-in", sign_in, methods=["POST"], name="web.sign_in"),
        Route("/sign-out", sign_out, methods=["POST"], name="web.sign_out"),
        Route("/patients/{patient_id}", page(patient_view), methods=["GET"], name="web.patient"),
        Route("/alarms", page(alarms), methods=["GET"], name="web.alarms"),
        Route(
            "/alarms/{alert_id}/acknowledge",
            page(acknowledge),
            methods=["POST"],
            name="web.acknowledge",
        ),
        Route("/alarms/{alert_id}/silence", page(silence), methods=["POST"], name="web.silence"),
        Route("/devices", page(devices), methods=["GET"], name="web.devices"),
        Route(
            "/campaigns/{campaign_id}/pause",
            page(_campaign_action("pause")),
            methods=["POST"],
            name="web.pause",
        ),
        Route(
            "/campaigns/{campaign_id}/resume",
            page(_campaign_action("resume")),
            methods=["POST"],
            name="web.resume",
        ),
        Route("/reports", page(reports), methods=["GET"], name="web.reports"),
        Route("/reports", page(generate_report), methods=["POST"], name="web.generate"),
        Route("/audit", page(audit), methods=["GET"], name="web.audit"),
        Route("/live/alerts", alerts_live, methods=["GET"], name="web.live_alerts"),
        Route(
            "/live/patients/{patient_id}",
            patient_live,
            methods=["GET"],
            name="web.live_patient",
        ),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
