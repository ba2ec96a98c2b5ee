"""The clinical pages: the ward overview, a patient's charts, the alarms, and the live streams
that keep them current (relayed from the API, which an EventSource cannot open itself)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from medcloud.web import session
from medcloud.web.client import Api, stream
from medcloud.web.rendering import (
    WARD_PAGE,
    client_of,
    epoch,
    me,
    parse_time,
    render,
    utc_now,
)

STALE_AFTER = dt.timedelta(minutes=5)
"""A vital older than this is marked stale on the ward overview: the monitor may be off."""
HISTORY = dt.timedelta(hours=6)
"""How much history the patient charts open with."""
HISTORY_BUCKET_SECONDS = 60


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
        at = parse_time(item["timestamp"])
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
    user = await me(request, api)
    wards_page, patients_page, alerts_page = await asyncio.gather(
        api.get("/api/v1/wards"),
        api.get("/api/v1/patients", limit=WARD_PAGE),
        api.get("/api/v1/alerts", state="active", limit=200),
    )
    wards = {w["id"]: w["name"] for w in wards_page["items"]}
    now = utc_now()
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
    user = await me(request, api)
    patient = await api.get(f"/api/v1/patients/{patient_id}")
    now = utc_now()
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
                entry["points"].append([epoch(bucket["start"]), bucket["avg"]])
    forecasts = await asyncio.gather(
        *(api.get_or_none(f"/api/v1/patients/{patient_id}/forecast", type=kind) for kind in series)
    )
    for kind, forecast in zip(list(series), forecasts, strict=True):
        if forecast and forecast.get("points"):
            series[kind]["forecast"] = [
                [epoch(p["at"]), p["lower"], p["mean"], p["upper"]] for p in forecast["points"]
            ]
    for entry in series.values():
        entry["points"].sort()
        latest_item = entry["latest"]
        point = [epoch(latest_item["timestamp"]), latest_item["value"]]
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
    status, body = await stream(request.app, path, headers, client=client_of(request))
    if status != 200:
        await body.aclose()
        return Response(status_code=status)
    return StreamingResponse(body, media_type="text/event-stream", headers=_STREAM_HEADERS)


_STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


# --- alarms -------------------------------------------------------------------------------


async def alarms(request: Request, api: Api) -> Response:
    """Active and acknowledged alarms with acknowledge and silence, and alarm-fatigue figures."""
    user = await me(request, api)
    now = utc_now()
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
