"""Reports over HTTP: a day of readings becomes a report whose PDF, CSV and FHIR Bundle say
what its summary says, behind signed links, within the reader's care scope."""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from typing import Any

import orjson
from fhir.resources.R4B.bundle import Bundle
from pypdf import PdfReader

from medcloud import simulator
from medcloud.reports import links
from medcloud.reports.exports import show
from medcloud.reports.figures import REFERENCE_RANGES
from tests.integration.analytics.helpers import acknowledge, audited, deliver, runtime
from tests.integration.devices.fleet import (
    MANUFACTURER,
    MODEL,
    register_model,
    release,
    start_campaign,
)
from tests.support.cast import Cast
from tests.support.client import Api, bearer, now, reading

STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"


def expected(points: list[tuple[dt.datetime, float]], measurement: str) -> dict[str, Any]:
    """The figures a report must show for these readings, worked out independently: time in
    range is the share of the minutes monitored whose mean lies in the range."""
    low, high = REFERENCE_RANGES[measurement]
    values = [value for _at, value in points]
    minutes: dict[dt.datetime, list[float]] = {}
    for at, value in points:
        minutes.setdefault(at.replace(second=0, microsecond=0), []).append(value)
    inside = sum(1 for m in minutes.values() if low <= statistics.fmean(m) <= high)
    return {
        "count": len(values),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "mean": round(statistics.fmean(values), 2),
        "time_in_range_percent": round(100 * inside / len(minutes), 2),
    }


async def monitor_peter_today(api: Api, cast: Cast) -> dict[str, list[tuple[dt.datetime, float]]]:
    """A stretch of today's monitoring of Peter, ending in a tachycardia alarm carol answers."""
    device = cast.devices["peters_oximeter"]
    # Readings belong to whoever the device was assigned to when they were taken: Peter's
    # stretch starts when his oximeter became his, moments ago.
    ref = await runtime(api).devices.get(device["id"])
    assert ref is not None and ref.patient_since is not None
    end = now()
    step = (end - ref.patient_since) / 42
    times = [ref.patient_since + step * k for k in range(1, 41)]
    heart = [60.0 + 10 * (i % 4) for i in range(len(times))]
    spo2 = [95.0 + i % 5 for i in range(len(times))]
    batch = [reading(at, heart_rate=h, spo2=s) for at, h, s in zip(times, heart, spo2, strict=True)]
    batch.append(reading(end, heart_rate=165, spo2=97))
    await deliver(api, device, *batch)
    refused = await api.send(device, {"readings": [reading(end, spo2=140)]})
    assert refused.status_code == 422
    alarms = await api.http.get(
        "/api/v1/alerts",
        params={"patient_id": cast.patients["peter"]["id"]},
        headers=cast.auth("carol_clinician"),
    )
    [alarm] = [a for a in alarms.json()["items"] if a.get("measurement") == "heart_rate"]
    assert (await acknowledge(api, cast.tokens["carol_clinician"], alarm["id"])).status_code == 200
    # Stored as the gate keeps them: to the millisecond.
    times = [t.replace(microsecond=t.microsecond // 1000 * 1000) for t in [*times, end]]
    return {
        "heart_rate": list(zip(times, [*heart, 165.0], strict=True)),
        "spo2": list(zip(times, [*spo2, 97.0], strict=True)),
    }


async def make(api: Api, token: str, **body: Any) -> Any:
    response = await api.http.post("/api/v1/reports", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_day_of_readings_becomes_a_report_whose_files_agree_with_its_figures(
    api: Api, cast: Cast
) -> None:
    sent = await monitor_peter_today(api, cast)
    peter = cast.patients["peter"]["id"]
    today = now().date().isoformat()
    report = await make(
        api, cast.tokens["carol_clinician"], scope="patient", patient_id=peter, day=today
    )
    assert report["trigger"] == "on_demand" and report["day"] == today
    summary = report["summary"]
    vitals = {v["type"]: v for v in summary["vitals"]}
    for measurement, values in sent.items():
        figures = {k: vitals[measurement][k] for k in expected(values, measurement)}
        assert figures == expected(values, measurement)
    assert summary["patients"] == 1
    assert summary["alarms"]["raised"] >= 1 and summary["alarms"]["acknowledged"] >= 1
    assert summary["alarms"]["median_seconds_to_acknowledge"] >= 0
    assert summary["data_quality"] == {"rejected": 1, "by_item": {"spo2": 1}}
    assert summary["devices"]["devices"] == 1

    pdf = await api.http.get(report["downloads"]["pdf"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("attachment;")
    text = " ".join(
        " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages).split()
    )
    for v in summary["vitals"]:
        assert (
            f"[{v['type']}] ({v['unit']}): count {v['count']}, min {show(v['min'])}, "
            f"max {show(v['max'])}, mean {show(v['mean'])}, "
            f"in range {show(v['time_in_range_percent'])} %"
        ) in text
    alarms = summary["alarms"]
    assert f"raised {alarms['raised']} (" in text
    assert f"acknowledged {alarms['acknowledged']}," in text
    assert f"scores {summary['news2']['count']}, patients {summary['news2']['patients']}" in text
    assert "rejected 1 (spo2 1)" in text and "devices 1 (status: " in text

    exported = await api.http.get(report["downloads"]["csv"])
    assert exported.headers["content-type"].startswith("text/csv")
    rows = {
        (r["section"], r["item"], r["figure"]): r["value"]
        for r in csv.DictReader(io.StringIO(exported.text))
    }
    for v in summary["vitals"]:
        for figure in ("count", "min", "max", "mean", "time_in_range_percent"):
            assert rows[("vitals", v["type"], figure)] == show(v[figure])
    assert rows[("alarms", "all", "raised")] == str(alarms["raised"])
    assert rows[("news2", "score", "count")] == str(summary["news2"]["count"])
    assert rows[("data_quality", "spo2", "rejected")] == "1"
    assert rows[("devices", "all", "count")] == "1"

    fhir = await api.http.get(report["downloads"]["fhir"])
    assert fhir.headers["content-type"] == "application/fhir+json"
    bundle = orjson.loads(fhir.content)
    Bundle.model_validate(bundle)
    resources = [entry["resource"] for entry in bundle["entry"]]
    [diagnostic] = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    assert diagnostic["subject"] == {"reference": f"Patient/{peter}"}
    by_loinc = {
        r["code"]["coding"][0]["code"]: r for r in resources if r["resourceType"] == "Observation"
    }
    for v in summary["vitals"]:
        components = {
            c["code"]["coding"][0]["code"]: c.get("valueQuantity", {}).get("value")
            or c.get("valueInteger")
            for c in by_loinc[v["loinc"]]["component"]
        }
        assert components["average"] == v["mean"] and components["count"] == v["count"]
        assert components["minimum"] == v["min"] and components["maximum"] == v["max"]

    # The ward's and the organisation's reports of the same day count Peter's readings alike.
    cardiology = await make(
        api,
        cast.tokens["nina_nurse"],
        scope="ward",
        ward_id=cast.wards["cardiology"],
        day=today,
    )
    organisation = await make(api, cast.tokens["alice_admin"], scope="organisation", day=today)
    for other in (cardiology, organisation):
        assert [v["count"] for v in other["summary"]["vitals"]] == [
            v["count"] for v in summary["vitals"]
        ]

    generated = await audited(api, "report.generate")
    assert {g["object_id"] for g in generated} >= {report["id"], cardiology["id"]}
    downloads = await audited(api, "report.download")
    assert sorted(d["detail"]["format"] for d in downloads) == ["csv", "fhir", "pdf"]
    family = cast.patients["peter"].get("family_name", "Peter")
    assert family not in orjson.dumps(generated + downloads).decode()


async def test_reports_stay_within_the_readers_care_scope(api: Api, cast: Cast) -> None:
    peter = cast.patients["peter"]["id"]
    today = now().date().isoformat()
    report = await make(
        api, cast.tokens["carol_clinician"], scope="patient", patient_id=peter, day=today
    )
    url = f"/api/v1/reports/{report['id']}"
    assert (await api.http.get(url, headers=cast.auth("nina_nurse"))).status_code == 200
    assert (await api.http.get(url, headers=cast.auth("audrey_auditor"))).status_code in (200, 404)
    assert (await api.http.get(url, headers=cast.auth("bob_other_ward"))).status_code == 404
    assert (await api.http.get(url, headers=cast.auth("mallory_other_org"))).status_code == 404
    assert (await api.http.get(url, headers=cast.auth("tess_technician"))).status_code == 403
    refused = await api.http.post(
        "/api/v1/reports",
        json={"scope": "patient", "patient_id": peter, "day": today},
        headers=cast.auth("bob_other_ward"),
    )
    assert refused.status_code == 404
    listed = await api.http.get("/api/v1/reports", headers=cast.auth("bob_other_ward"))
    assert listed.json() == {"items": [], "next_cursor": None}
    mine = await api.http.get(
        "/api/v1/reports", params={"patient_id": peter}, headers=cast.auth("nina_nurse")
    )
    assert [r["id"] for r in mine.json()["items"]] == [report["id"]]

    missing = await api.http.post(
        "/api/v1/reports", json={"scope": "ward", "day": today}, headers=cast.auth("alice_admin")
    )
    assert missing.status_code == 422
    assert missing.headers["content-type"] == "application/problem+json"
    assert "body.ward_id" in missing.text
    future = (now().date() + dt.timedelta(days=2)).isoformat()
    ahead = await api.http.post(
        "/api/v1/reports",
        json={"scope": "organisation", "day": future},
        headers=cast.auth("alice_admin"),
    )
    assert ahead.status_code == 422 and "body.day" in ahead.text


async def test_a_download_link_works_only_as_signed_and_until_it_expires(
    api: Api, cast: Cast
) -> None:
    today = now().date().isoformat()
    report = await make(api, cast.tokens["alice_admin"], scope="organisation", day=today)
    link = report["downloads"]["csv"]
    assert (await api.http.get(link)).status_code == 200
    tampered = link[:-1] + ("0" if link[-1] != "0" else "1")
    refused = await api.http.get(tampered)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    # A CSV link does not open the PDF.
    assert (await api.http.get(link.replace("/files/csv", "/files/pdf"))).status_code == 403
    key = links.link_key(runtime(api).settings)
    expired = int(now().timestamp()) - 1
    signature = links.sign(key, report["id"], "csv", expired)
    path = f"/api/v1/reports/{report['id']}/files/csv?expires={expired}&signature={signature}"
    assert (await api.http.get(path)).status_code == 403
    expires_at = dt.datetime.fromisoformat(report["downloads"]["expires_at"])
    assert dt.timedelta(minutes=14) < expires_at - now() <= dt.timedelta(minutes=15)


async def test_an_organisations_report_tells_how_the_days_firmware_campaigns_went(
    api: Api, cast: Cast
) -> None:
    alice = cast.tokens["alice_admin"]
    vendor = await register_model(api, alice)
    await simulator.register_fleet(
        api.http,
        alice,
        3,
        prefix="REPORTED",
        model=MODEL,
        manufacturer=MANUFACTURER,
        firmware_version="1.0.0",
        patients=False,
    )
    image = await release(api, alice, vendor, "2.0.0")
    started = await start_campaign(api, alice, vendor, image, name="=spring update")
    today = now().date().isoformat()
    report = await make(api, alice, scope="organisation", ward_id=None, patient_id=None, day=today)
    campaigns = report["summary"]["devices"]["campaigns"]
    [shown] = [c for c in campaigns if c["name"] == "=spring update"]
    assert shown == {
        "name": "=spring update",
        "status": started["status"],
        "wave": f"{started['current_wave'] + 1}/{len(started['waves'])}",
        "targets": started["targets"],
    }
    rows = await api.http.get(report["downloads"]["csv"])
    campaign_rows = [
        r for r in csv.DictReader(io.StringIO(rows.text)) if r["section"] == "campaigns"
    ]
    # A spreadsheet shows the name; it does not run it as a formula.
    assert "'=spring update" in {r["item"] for r in campaign_rows}
    assert "=spring update" not in {r["item"] for r in campaign_rows}
    pdf = PdfReader(io.BytesIO((await api.http.get(report["downloads"]["pdf"])).content))
    text = " ".join(" ".join(page.extract_text() for page in pdf.pages).split())
    assert f"=spring update: {started['status']}, wave {shown['wave']}" in text
    # A ward's report leaves the fleet's campaigns to the organisation's.
    ward = await make(
        api, alice, scope="ward", ward_id=cast.wards["cardiology"], patient_id=None, day=today
    )
    assert ward["summary"]["devices"]["campaigns"] == []
