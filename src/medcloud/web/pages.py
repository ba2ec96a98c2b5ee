"""The dashboard's pages: each one the answers of a few API calls, rendered.

Pages hold no business rule: what a user may see and do is what the API answers them (see
`client.py`). A page answers the API's own status when the API refuses (403, 404), and sends
the browser to sign in when it has no session the API accepts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from medcloud.web import session
from medcloud.web.client import Api, ApiRefused, Tokens, stream

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def _humane(name: object) -> str:
    """`heart_rate_high` as people read it."""
    return str(name or "").replace("_", " ")


templates.env.filters["humane"] = _humane

STALE_AFTER = dt.timedelta(minutes=5)
"""A vital older than this is marked stale on the ward overview: the monitor may be off."""
HISTORY = dt.timedelta(hours=6)
"""How much history the patient charts open with."""
HISTORY_BUCKET_SECONDS = 60
WARD_PAGE = 100
"""Patients shown on the ward overview at most (one page of the patient list)."""

# Pages set their own policy (the edge's is for API answers): scripts and styles from this
# site only, nothing framed, forms posted here only.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

Handler = Callable[[Request, Api], Awaitable[Response]]


def _client(request: Request) -> tuple[str, int] | None:
    return (request.client.host, request.client.port) if request.client else None


def api_for(request: Request, tokens: Tokens | None, *, may_renew: bool = True) -> Api:
    """The API as the browser's user, from the client's own address (for audit and throttling)."""
    return Api(request.app, tokens, client=_client(request), may_renew=may_renew)


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    """Render a template with what every page needs (the CSRF token, the signed-in user)."""
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": session.csrf_token(request), "user": None, **context},
        status_code=status,
    )
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    session.keep_csrf(response, request)
    return response


def _to_sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/sign-in?next={quote(target)}"
    response: Response
    if request.headers.get("hx-request"):
        # A fragment refresh must move the whole page, not put the sign-in form in its place.
        response = Response(status_code=204, headers={"HX-Redirect": location})
    else:
        response = RedirectResponse(location, status_code=303)
    session.forget_tokens(response, request)
    return response


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run a page as the signed-in user: sign-in first, the API's refusals as the answer."""

    async def endpoint(request: Request) -> Response:
        tokens = session.tokens_of(request)
        if tokens is None:
            return _to_sign_in(request)
        if request.method == "POST":
            form = await request.form()
            if not session.csrf_ok(request, form.get(session.CSRF_FIELD)):
                return render(
                    request,
                    "error.html",
                    status=403,
                    title="Form expired",
                    detail="This form could not be checked. Reload the page and try again.",
                )
        api = api_for(request, tokens)
        try:
            response = await handler(request, api)
        except ApiRefused as refused:
            if refused.status == 401:
                return _to_sign_in(request)
            response = render(
                request,
                "error.html",
                status=refused.status,
                title=refused.title,
                detail=refused.detail,
                user=getattr(request.state, "user", None),
            )
        if api.renewed is not None:
            session.keep_tokens(response, request, api.renewed)
        return response

    return endpoint


async def _me(request: Request, api: Api) -> dict[str, Any]:
    user: dict[str, Any] = await api.get("/api/v1/users/me")
    request.state.user = user
    return user


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


# --- ward overview ------------------------------------------------------------------------

_PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}
VITAL_LABELS = {
    "heart_rate": "Heart rate",
    "spo2": "SpO₂",
    "respiratory_rate": "Resp. rate",
    "systolic_bp": "Systolic BP",
    "diastolic_bp": "Diastolic BP",
    "temperature": "Temperature",
}


def _trend(scores: list[dict[str, Any]]) -> str:
    if len(scores) < 2:
        return "steady"
    latest, previous = scores[0]["score"], scores[1]["score"]
    return "rising" if latest > previous else "falling" if latest < previous else "steady"


async def _patient_row(api: Api, patient: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    latest, news2 = await asyncio.gather(
        api.get_or_none(f"/api/v1/readings/latest/{patient['id']}"),
        api.get_or_none(f"/api/v1/patients/{patient['id']}/news2", hours=24, limit=10),
    )
    vitals = []
    for item in (latest or {}).get("items", []):
        at = _parse(item["timestamp"])
        vitals.append(
            {
                **item,
                "label": VITAL_LABELS.get(item["type"], item["type"].replace("_", " ")),
                "stale": at is None or now - at > STALE_AFTER,
            }
        )
    scores = sorted((news2 or {}).get("items", []), key=lambda s: str(s["scored_at"]), reverse=True)
    return {
        "patient": patient,
        "vitals": vitals,
        "news2": scores[0] if scores else None,
        "trend": _trend(scores),
        "previous": scores[1]["score"] if len(scores) > 1 else None,
        "stale": not vitals or all(v["stale"] for v in vitals),
    }


def _by_priority(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(alerts, key=lambda a: (_PRIORITY_ORDER.get(a["priority"], 3), a["raised_at"]))


async def _ward_context(request: Request, api: Api) -> dict[str, Any]:
    user = await _me(request, api)
    wards_page, patients_page, alerts_page = await asyncio.gather(
        api.get("/api/v1/wards"),
        api.get("/api/v1/patients", limit=WARD_PAGE),
        api.get("/api/v1/alerts", state="active", limit=200),
    )
    wards = {w["id"]: w["name"] for w in wards_page["items"]}
    now = _now()
    rows = await asyncio.gather(*(_patient_row(api, p, now) for p in patients_page["items"]))
    alerts = _by_priority(alerts_page["items"])
    for row in rows:
        row["alerts"] = [a for a in alerts if a["patient_id"] == row["patient"]["id"]]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(
        rows,
        key=lambda r: (
            min((_PRIORITY_ORDER[a["priority"]] for a in r["alerts"]), default=3),
            -(r["news2"]["score"] if r["news2"] else -1),
        ),
    ):
        ward_id = row["patient"]["ward_id"]
        groups.setdefault(wards.get(ward_id, "No ward") if ward_id else "No ward", []).append(row)
    return {
        "user": user,
        "groups": groups,
        "counts": {p: sum(1 for a in alerts if a["priority"] == p) for p in _PRIORITY_ORDER},
        "updated_at": now,
    }


async def ward_overview(request: Request, api: Api) -> Response:
    """Each patient in the user's care with vitals, NEWS2 and alarms; refreshed live."""
    context = await _ward_context(request, api)
    name = "ward_rows.html" if request.headers.get("hx-request") else "ward.html"
    return render(request, name, **context)


# --- patient view -------------------------------------------------------------------------


async def patient_view(request: Request, api: Api) -> Response:
    """One patient's live charts, NEWS2, forecast and alarm history, with acknowledge/silence."""
    patient_id = request.path_params["patient_id"]
    user = await _me(request, api)
    patient = await api.get(f"/api/v1/patients/{patient_id}")
    now = _now()
    devices, latest, news2, alerts = await asyncio.gather(
        api.get("/api/v1/devices", patient_id=patient_id, limit=20),
        api.get(f"/api/v1/readings/latest/{patient_id}"),
        api.get_or_none(f"/api/v1/patients/{patient_id}/news2", hours=24, limit=50),
        api.get("/api/v1/alerts", patient_id=patient_id, limit=50),
    )
    start = (now - HISTORY).isoformat()
    series: dict[str, dict[str, Any]] = {}
    for item in latest["items"]:
        series[item["type"]] = {
            "type": item["type"],
            "label": VITAL_LABELS.get(item["type"], item["type"].replace("_", " ")),
            "unit": item["unit"],
            "latest": item,
            "points": [],
            "forecast": None,
        }
    device_ids = {d["id"] for d in devices["items"]} | {i["device_id"] for i in latest["items"]}
    buckets = await asyncio.gather(
        *(
            api.get_or_none(
                f"/api/v1/devices/{device_id}/data/buckets",
                start=start,
                end=now.isoformat(),
                bucket=HISTORY_BUCKET_SECONDS,
            )
            for device_id in sorted(device_ids)
        )
    )
    for page_ in buckets:
        for bucket in (page_ or {}).get("items", []):
            entry = series.get(bucket["type"])
            if entry is not None:
                entry["points"].append([_epoch(bucket["start"]), bucket["avg"]])
    forecasts = await asyncio.gather(
        *(api.get_or_none(f"/api/v1/patients/{patient_id}/forecast", type=kind) for kind in series)
    )
    for kind, forecast in zip(list(series), forecasts, strict=True):
        if forecast and forecast.get("points"):
            series[kind]["forecast"] = [
                [_epoch(p["at"]), p["lower"], p["mean"], p["upper"]] for p in forecast["points"]
            ]
    for entry in series.values():
        entry["points"].sort()
        latest_item = entry["latest"]
        point = [_epoch(latest_item["timestamp"]), latest_item["value"]]
        if not entry["points"] or entry["points"][-1][0] < point[0]:
            entry["points"].append(point)
    scores = sorted((news2 or {}).get("items", []), key=lambda s: str(s["scored_at"]), reverse=True)
    return render(
        request,
        "patient.html",
        user=user,
        patient=patient,
        devices=devices["items"],
        series=list(series.values()),
        news2=scores[0] if scores else None,
        trend=_trend(scores),
        alerts=alerts["items"],
        chart_data={"series": list(series.values()), "live": f"/live/patients/{patient_id}"},
    )


async def patient_live(request: Request) -> Response:
    """The API's live readings of one patient (`/api/v1/readings/latest/{id}/stream`) relayed to
    the browser: opened, and audited, once, with the API's refusal as the stream's answer."""
    return await _relay(
        request, f"/api/v1/readings/latest/{request.path_params['patient_id']}/stream"
    )


async def alerts_live(request: Request) -> Response:
    """The API's alarm stream (`/api/v1/alerts/stream`) relayed to the browser."""
    return await _relay(request, "/api/v1/alerts/stream")


async def _relay(request: Request, path: str) -> Response:
    """Relay an API event stream, which an EventSource cannot open: it sends no bearer token.

    A relay never renews the session (that would spend the refresh token the browser holds): a
    refusal ends it, and the page reloads through a normal request that renews it.
    """
    tokens = session.tokens_of(request)
    if tokens is None:
        return Response(status_code=401)
    headers = {"Authorization": f"Bearer {tokens.access}", "Accept": "text/event-stream"}
    status, body = await stream(request.app, path, headers, client=_client(request))
    if status != 200:
        await body.aclose()
        return Response(status_code=status)
    return StreamingResponse(body, media_type="text/event-stream", headers=_STREAM_HEADERS)


_STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


# --- alarms -------------------------------------------------------------------------------


async def alarms(request: Request, api: Api) -> Response:
    """Active and acknowledged alarms with acknowledge and silence, and alarm-fatigue figures."""
    user = await _me(request, api)
    now = _now()
    active, acknowledged, wards, figures = await asyncio.gather(
        api.get("/api/v1/alerts", state="active", limit=200),
        api.get("/api/v1/alerts", state="acknowledged", limit=100),
        api.get("/api/v1/wards"),
        api.get_or_none(
            "/api/v1/analytics/alarm-figures",
            start=(now - dt.timedelta(days=7)).isoformat(),
            end=now.isoformat(),
        ),
    )
    return render(
        request,
        "alarms.html",
        user=user,
        active=_by_priority(active["items"]),
        acknowledged=acknowledged["items"],
        wards={w["id"]: w["name"] for w in wards["items"]},
        figures=figures,
    )


async def acknowledge(request: Request, api: Api) -> Response:
    """Acknowledge an alarm through the API, then go back to the page it was acknowledged on."""
    await api.post(f"/api/v1/alerts/{request.path_params['alert_id']}/acknowledge")
    form = await request.form()
    return RedirectResponse(session.local_path(form.get("next"), "/alarms"), status_code=303)


async def silence(request: Request, api: Api) -> Response:
    """Silence an alarm's audible signal for the chosen time, through the API."""
    form = await request.form()
    try:
        seconds = float(str(form.get("seconds") or "120"))
    except ValueError:
        seconds = 120.0
    await api.post(
        f"/api/v1/alerts/{request.path_params['alert_id']}/silence", json={"seconds": seconds}
    )
    return RedirectResponse(session.local_path(form.get("next"), "/alarms"), status_code=303)


# --- devices ------------------------------------------------------------------------------


async def devices(request: Request, api: Api) -> Response:
    """Devices with status, battery, last contact and firmware; firmware campaigns."""
    user = await _me(request, api)
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
    user = await _me(request, api)
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
        today=_now().date().isoformat(),
    )


async def generate_report(request: Request, api: Api) -> Response:
    """Ask the API for a report now."""
    form = await request.form()
    scope = str(form.get("scope") or "organisation")
    body: dict[str, Any] = {"scope": scope, "day": str(form.get("day") or _now().date())}
    if scope == "ward":
        body["ward_id"] = str(form.get("ward_id") or "")
    if scope == "patient":
        body["patient_id"] = str(form.get("patient_id") or "")
    await api.post("/api/v1/reports", json=body)
    return RedirectResponse("/reports", status_code=303)


# --- audit --------------------------------------------------------------------------------


async def audit(request: Request, api: Api) -> Response:
    """The audit log, newest first, and (on request) verification of its hash chain."""
    user = await _me(request, api)
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
