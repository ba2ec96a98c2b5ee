"""Events the reports context publishes."""

from __future__ import annotations

import datetime as dt

from medcloud.platform.events import Event


class ReportGenerated(Event):
    """A report was made and its files stored; recipients may be told where to find it."""

    routing_key = "report.generated"

    report_id: str
    scope: str
    ward_id: str | None
    patient_id: str | None
    day: dt.date
    trigger: str
    requested_by: str | None
