"""The PDF, CSV and FHIR Bundle of a report print the figures of its summary."""

from __future__ import annotations

import csv
import datetime as dt
import io

import orjson
from fhir.resources.R4B.bundle import Bundle
from pypdf import PdfReader

from medcloud.platform.directory import AlarmFact, CampaignCard, ReadingBucket, ScoreFact
from medcloud.reports.exports import ReportFacts, render_csv, render_fhir, show
from medcloud.reports.figures import (
    alarm_summary,
    data_quality,
    day_bounds,
    device_summary,
    news2_summary,
    vital_summary,
)
from medcloud.reports.pdf import render_pdf
from medcloud.reports.schemas import ReportSummary, Scope

DAY = dt.date(2026, 3, 2)
START, END = day_bounds(DAY)
FACTS = ReportFacts(
    id="5b1f0c1e-7b9e-4c55-8a9c-1f0d3c2b4a11",
    organisation_id="org-1",
    scope=Scope.WARD,
    ward_id="ward-7",
    patient_id=None,
    day=DAY,
    trigger="scheduled",
    generated_at=END + dt.timedelta(hours=2),
)


def summary() -> ReportSummary:
    times = [START + dt.timedelta(minutes=m) for m in range(0, 1440, 10)]
    heart = [
        ReadingBucket("heart_rate", t, 55, 80, 60.0 + (i % 7) * 7.5, 60)
        for i, t in enumerate(times)
    ]
    spo2 = [ReadingBucket("spo2", t, 92, 99, 93.0 + i % 6, 30) for i, t in enumerate(times)]
    return ReportSummary(
        start=START,
        end=END,
        patients=2,
        vitals=[
            vital_summary("heart_rate", heart, START, END),
            vital_summary("spo2", spo2, START, END),
        ],
        news2=news2_summary(
            [ScoreFact("p", START + dt.timedelta(hours=h), h % 8) for h in range(24)], START, END
        ),
        alarms=alarm_summary(
            [AlarmFact("a", "p", "high", START, START + dt.timedelta(seconds=42), 1)]
        ),
        data_quality=data_quality({"spo2": 3}),
        devices=device_summary([]),
    )


def test_the_pdf_prints_every_figure_and_draws_charts() -> None:
    figures = summary()
    pdf = render_pdf(FACTS, figures)
    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    assert "medcloud daily report: ward ward-7" in text
    for v in figures.vitals:
        assert f"count {v.count}, min {show(v.min)}, max {show(v.max)}, mean {show(v.mean)}" in text
        assert f"in range {show(v.time_in_range_percent)} %" in text
    assert f"max {figures.news2.max}," in text and "median time to acknowledge 42.00 s" in text
    assert "rejected 3 (spo2 3)" in text
    images = [image for page in reader.pages for image in page.images]
    assert len(images) == len(figures.vitals) + 1  # one chart per vital, one of NEWS2


def test_the_csv_holds_every_figure_and_trend_point() -> None:
    figures = summary()
    rows = list(csv.DictReader(io.StringIO(render_csv(FACTS, figures).decode())))
    found = {(r["section"], r["item"], r["figure"]): r["value"] for r in rows}
    heart = figures.vitals[0]
    assert found[("vitals", "heart_rate", "mean")] == show(heart.mean)
    assert found[("vitals", "spo2", "time_in_range_percent")] == show(
        figures.vitals[1].time_in_range_percent
    )
    assert found[("alarms", "high", "raised")] == "1"
    assert found[("data_quality", "spo2", "rejected")] == "3"
    trend = [r for r in rows if r["section"] == "trend" and r["item"] == "heart_rate"]
    assert len(trend) == 48 and trend[0]["value"] == show(heart.trend[0].mean)


def test_the_bundle_is_valid_fhir_whose_observations_carry_the_figures() -> None:
    figures = summary()
    bundle = orjson.loads(render_fhir(FACTS, figures))
    Bundle.model_validate(bundle)
    resources = [entry["resource"] for entry in bundle["entry"]]
    report = resources[0]
    assert report["resourceType"] == "DiagnosticReport"
    assert report["subject"] == {"reference": "Group/ward-7"}
    observations = {r["id"]: r for r in resources[1:]}
    assert [ref["reference"].split("/")[1] for ref in report["result"]] == list(observations)
    heart = next(o for o in observations.values() if o["code"]["coding"][0]["code"] == "8867-4")
    values = {c["code"]["coding"][0]["code"]: c for c in heart["component"]}
    assert values["average"]["valueQuantity"]["value"] == figures.vitals[0].mean
    assert values["count"]["valueInteger"] == figures.vitals[0].count


def test_names_people_typed_are_printed_as_typed_never_interpreted() -> None:
    typed = "<b>spring</b> & =HYPERLINK()"
    figures = summary().model_copy(
        update={"devices": device_summary([], [CampaignCard("c", typed, "running", 0, 2, {})])}
    )
    reader = PdfReader(io.BytesIO(render_pdf(FACTS, figures)))
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    assert f"{typed}: running, wave 1/2" in text
    rows = list(csv.DictReader(io.StringIO(render_csv(FACTS, figures).decode())))
    assert {r["item"] for r in rows if r["section"] == "campaigns"} == {typed}
    formula = figures.model_copy(
        update={"devices": device_summary([], [CampaignCard("c", "=1+1", "running", 0, 2, {})])}
    )
    rows = list(csv.DictReader(io.StringIO(render_csv(FACTS, formula).decode())))
    assert {r["item"] for r in rows if r["section"] == "campaigns"} == {"'=1+1"}
