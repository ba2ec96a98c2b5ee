"""A report's PDF: its figures as text, and charts of the day drawn with matplotlib's Agg.

Figures are printed with `exports.show`, so the PDF says exactly what the CSV and the API say.
Rendering is CPU work: callers run it off the event loop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from xml.sax.saxutils import escape

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate

from medcloud.reports.exports import ReportFacts, show
from medcloud.reports.schemas import ReportSummary, TrendPoint

CHART_SIZE = (17 * cm, 4.2 * cm)
CHART_DPI = 110


def render_pdf(facts: ReportFacts, summary: ReportSummary) -> bytes:
    """Lay out the report: who and when, then vitals, NEWS2 and alarms, each with its chart."""
    styles = getSampleStyleSheet()
    body, heading = styles["BodyText"], styles["Heading2"]
    story: list[Flowable] = [
        Paragraph(f"medcloud daily report: {facts.subject}", styles["Title"]),
        Paragraph(
            f"Day {facts.day.isoformat()} (UTC) · {facts.trigger.replace('_', ' ')} · "
            f"generated {facts.generated_at.strftime('%Y-%m-%d %H:%M')} UTC · report {facts.id}",
            body,
        ),
        Paragraph(f"Patients with readings: {show(summary.patients)}", body),
        Paragraph("Vital signs", heading),
    ]
    if not summary.vitals:
        story.append(Paragraph("No readings were stored this day.", body))
    for vital in summary.vitals:
        in_range = (
            f"in range {show(vital.time_in_range_percent)} % "
            f"({show(vital.reference_low)}–{show(vital.reference_high)})"
            if vital.time_in_range_percent is not None
            else "no reference range"
        )
        story.append(
            Paragraph(
                f"<b>{vital.display}</b> [{vital.type}] ({vital.unit}): "
                f"count {show(vital.count)}, min {show(vital.min)}, max {show(vital.max)}, "
                f"mean {show(vital.mean)}, {in_range}",
                body,
            )
        )
        story.append(_chart(vital.trend, vital.display, vital.reference_low, vital.reference_high))
    news2 = summary.news2
    story += [
        Paragraph("NEWS2", heading),
        Paragraph(
            f"scores {show(news2.count)}, patients {show(news2.patients)}, "
            f"mean {show(news2.mean) or '–'}, max {show(news2.max) or '–'}, "
            f"medium risk (5–6) {show(news2.medium_risk_count)}, "
            f"high risk (7+) {show(news2.high_risk_count)}",
            body,
        ),
    ]
    if news2.trend:
        story.append(_chart(news2.trend, "NEWS2", None, None))
    alarms = summary.alarms
    priorities = ", ".join(f"{p} {show(n)}" for p, n in alarms.by_priority.items()) or "none"
    story += [
        Paragraph("Alarms", heading),
        Paragraph(
            f"raised {show(alarms.raised)} ({priorities}), "
            f"acknowledged {show(alarms.acknowledged)}, "
            f"median time to acknowledge {show(alarms.median_seconds_to_acknowledge) or '–'} s, "
            f"longest {show(alarms.max_seconds_to_acknowledge) or '–'} s, "
            f"escalated {show(alarms.escalated)} (escalations {show(alarms.escalations)})",
            body,
        ),
    ]
    quality, devices = summary.data_quality, summary.devices
    refused = ", ".join(f"{item} {show(n)}" for item, n in quality.by_item.items()) or "none"
    statuses = ", ".join(f"{status} {show(n)}" for status, n in devices.by_status.items())
    versions = ", ".join(f"{version} {show(n)}" for version, n in devices.firmware.items())
    story += [
        Paragraph("Data quality", heading),
        Paragraph(f"rejected {show(quality.rejected)} ({refused})", body),
        Paragraph("Devices", heading),
        Paragraph(
            f"devices {show(devices.devices)} (status: {statuses or 'none'}; "
            f"firmware: {versions or 'none'})",
            body,
        ),
    ]
    if devices.campaigns:
        story.append(Paragraph("Firmware campaigns", heading))
    for campaign in devices.campaigns:
        states = ", ".join(f"{state} {show(n)}" for state, n in campaign.targets.items())
        story.append(
            Paragraph(
                escape(
                    f"{campaign.name}: {campaign.status}, wave {campaign.wave} "
                    f"(devices: {states or 'none'})"
                ),
                body,
            )
        )
    out = io.BytesIO()
    document = SimpleDocTemplate(
        out,
        pagesize=A4,
        title=f"medcloud report {facts.day.isoformat()}",
        author="medcloud",
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
    )
    document.build(story)
    return out.getvalue()


def _chart(
    points: Sequence[TrendPoint], title: str, low: float | None, high: float | None
) -> Flowable:
    """A PNG of the day's trend: the mean of each bucket within its low–high band."""
    width, height = CHART_SIZE
    figure = Figure(figsize=(width / 72, height / 72), dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    hours = [p.at.hour + p.at.minute / 60 for p in points]
    axes.fill_between(hours, [p.low for p in points], [p.high for p in points], alpha=0.25)
    axes.plot(hours, [p.mean for p in points], linewidth=1.2)
    if low is not None and high is not None:
        axes.axhspan(low, high, color="green", alpha=0.06)
    axes.set_xlim(0, 24)
    axes.set_xticks(range(0, 25, 3))
    axes.set_title(title, fontsize=8)
    axes.tick_params(labelsize=7)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    png.seek(0)
    return Image(png, width=width, height=height)
