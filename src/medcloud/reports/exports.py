"""A report's CSV and FHIR R4 Bundle, built from its summary alone, so they agree with it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from fhir.resources.R4B.bundle import Bundle

from medcloud.reports.schemas import ReportSummary, Scope, VitalSummary

STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
MEDCLOUD = "urn:medcloud:report"
NEWS2_CODE = ("1104051000000101", "Royal College of Physicians NEWS2 total score")
NAMESPACE = uuid.UUID("6f1f3c2e-3c63-4d55-9a3c-7d5c2f0b6a11")
CSV_HEADER = ("section", "item", "figure", "value", "unit")


@dataclass(frozen=True)
class ReportFacts:
    """What a rendered report says about itself besides its figures."""

    id: str
    organisation_id: str
    scope: Scope
    ward_id: str | None
    patient_id: str | None
    day: dt.date
    trigger: str
    generated_at: dt.datetime

    @property
    def subject(self) -> str:
        """Who the report is about, by id (never by name)."""
        if self.scope is Scope.PATIENT:
            return f"patient {self.patient_id}"
        if self.scope is Scope.WARD:
            return f"ward {self.ward_id}"
        return f"organisation {self.organisation_id}"


def show(value: float | int | None) -> str:
    """Write a figure as every format writes it: two decimals for measured values."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}"


def inert(text: str) -> str:
    """A name someone typed, as a spreadsheet shows it rather than runs it (a cell starting with
    `=`, `+`, `-` or `@` is a formula to Excel and LibreOffice)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text


def figure_rows(summary: ReportSummary) -> Iterator[tuple[str, str, str, str, str]]:
    """Every figure of the summary as (section, item, figure, value, unit)."""
    yield ("report", "patients", "count", show(summary.patients), "")
    for vital in summary.vitals:
        for name, value in _vital_figures(vital):
            unit = "%" if name.endswith("percent") else vital.unit
            yield ("vitals", vital.type, name, show(value), unit)
    news2 = summary.news2
    for name, value in (
        ("count", news2.count),
        ("patients", news2.patients),
        ("mean", news2.mean),
        ("max", news2.max),
        ("medium_risk_count", news2.medium_risk_count),
        ("high_risk_count", news2.high_risk_count),
    ):
        yield ("news2", "score", name, show(value), "")
    alarms = summary.alarms
    for name, value, unit in (
        ("raised", alarms.raised, ""),
        ("acknowledged", alarms.acknowledged, ""),
        ("median_seconds_to_acknowledge", alarms.median_seconds_to_acknowledge, "s"),
        ("max_seconds_to_acknowledge", alarms.max_seconds_to_acknowledge, "s"),
        ("escalated", alarms.escalated, ""),
        ("escalations", alarms.escalations, ""),
    ):
        yield ("alarms", "all", name, show(value), unit)
    for priority, count in alarms.by_priority.items():
        yield ("alarms", priority, "raised", show(count), "")
    quality = summary.data_quality
    yield ("data_quality", "all", "rejected", show(quality.rejected), "")
    for item, count in quality.by_item.items():
        yield ("data_quality", item, "rejected", show(count), "")
    devices = summary.devices
    yield ("devices", "all", "count", show(devices.devices), "")
    for status, count in devices.by_status.items():
        yield ("devices", status, "status", show(count), "")
    for version, count in devices.firmware.items():
        yield ("devices", version, "firmware", show(count), "")
    for campaign in devices.campaigns:
        name = inert(campaign.name)
        yield ("campaigns", name, "status", campaign.status, "")
        yield ("campaigns", name, "wave", campaign.wave, "")
        for state, count in campaign.targets.items():
            yield ("campaigns", name, state, show(count), "")


def _vital_figures(vital: VitalSummary) -> list[tuple[str, float | int | None]]:
    return [
        ("count", vital.count),
        ("min", vital.min),
        ("max", vital.max),
        ("mean", vital.mean),
        ("time_in_range_percent", vital.time_in_range_percent),
    ]


def render_csv(facts: ReportFacts, summary: ReportSummary) -> bytes:
    """The figures, then each trend bucket, one row each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerow(("report", facts.scope.value, "day", facts.day.isoformat(), ""))
    writer.writerow(("report", facts.scope.value, "subject", facts.subject, ""))
    writer.writerows(figure_rows(summary))
    for vital in summary.vitals:
        for point in vital.trend:
            at = point.at.isoformat()
            writer.writerow(("trend", vital.type, at, show(point.mean), vital.unit))
    for point in summary.news2.trend:
        writer.writerow(("trend", "news2", point.at.isoformat(), show(point.mean), ""))
    return out.getvalue().encode()


def render_fhir(facts: ReportFacts, summary: ReportSummary) -> bytes:
    """A FHIR R4 collection Bundle: a DiagnosticReport and the Observations it results in."""
    subject = _subject(facts)
    period = {"start": summary.start.isoformat(), "end": summary.end.isoformat()}
    observations: list[dict[str, Any]] = []
    for vital in summary.vitals:
        components = [
            _quantity("average", vital.mean, vital.unit),
            _quantity("minimum", vital.min, vital.unit),
            _quantity("maximum", vital.max, vital.unit),
            _count("count", vital.count),
        ]
        if vital.time_in_range_percent is not None:
            components.append(_local_quantity("time-in-range", vital.time_in_range_percent, "%"))
        observations.append(
            _observation(
                facts,
                f"vital:{vital.type}",
                {"coding": [{"system": LOINC, "code": vital.loinc, "display": vital.display}]},
                subject,
                period,
                components,
                vital_signs=True,
            )
        )
    news2 = summary.news2
    if news2.count:
        observations.append(
            _observation(
                facts,
                "news2",
                {"coding": [{"system": SNOMED, "code": NEWS2_CODE[0], "display": NEWS2_CODE[1]}]},
                subject,
                period,
                [
                    _quantity("average", news2.mean or 0.0, "{score}"),
                    _quantity("maximum", float(news2.max or 0), "{score}"),
                    _count("count", news2.count),
                ],
                vital_signs=False,
            )
        )
    alarms = summary.alarms
    alarm_components = [
        _local_count("alarms-raised", alarms.raised),
        _local_count("alarms-acknowledged", alarms.acknowledged),
        _local_count("alarms-escalated", alarms.escalated),
    ]
    if alarms.median_seconds_to_acknowledge is not None:
        alarm_components.append(
            _local_quantity("median-time-to-acknowledge", alarms.median_seconds_to_acknowledge, "s")
        )
    observations.append(
        _observation(
            facts,
            "alarms",
            {"coding": [{"system": MEDCLOUD, "code": "alarms", "display": "Alarms"}]},
            subject,
            period,
            alarm_components,
            vital_signs=False,
        )
    )
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": facts.id,
        "status": "final",
        "code": {
            "coding": [{"system": MEDCLOUD, "code": facts.scope.value, "display": "Daily report"}],
            "text": f"Daily report of {facts.subject}, {facts.day.isoformat()}",
        },
        "effectivePeriod": period,
        "issued": facts.generated_at.isoformat(),
        "performer": [{"reference": f"Organization/{facts.organisation_id}"}],
        "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
    }
    if subject is not None:
        report["subject"] = subject
    resources = [report, *observations]
    bundle = {
        "resourceType": "Bundle",
        "id": facts.id,
        "type": "collection",
        "timestamp": facts.generated_at.isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }
    # Validated as interop validates what it sends: a Bundle that is not R4 is a bug here.
    Bundle.model_validate(bundle)
    return orjson.dumps(bundle, option=orjson.OPT_INDENT_2)


def _subject(facts: ReportFacts) -> dict[str, str] | None:
    if facts.scope is Scope.PATIENT:
        return {"reference": f"Patient/{facts.patient_id}"}
    if facts.scope is Scope.WARD:
        return {"reference": f"Group/{facts.ward_id}"}
    return None


def _observation(
    facts: ReportFacts,
    name: str,
    code: dict[str, Any],
    subject: dict[str, str] | None,
    period: dict[str, str],
    components: list[dict[str, Any]],
    *,
    vital_signs: bool,
) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(uuid.uuid5(NAMESPACE, f"{facts.id}:{name}")),
        "status": "final",
        "code": code,
        "effectivePeriod": period,
        "issued": facts.generated_at.isoformat(),
        "component": components,
    }
    if vital_signs:
        observation["category"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ]
    if subject is not None:
        observation["subject"] = subject
    return observation


def _quantity(statistic: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": STATISTICS, "code": statistic}]},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def _count(statistic: str, value: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": STATISTICS, "code": statistic}]}, "valueInteger": value}


def _local_quantity(code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": MEDCLOUD, "code": code}]},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def _local_count(code: str, value: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": MEDCLOUD, "code": code}]}, "valueInteger": value}
