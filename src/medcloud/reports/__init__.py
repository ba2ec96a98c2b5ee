"""Reports: daily and on-demand reports of an organisation, ward or patient's day, as PDF, CSV
and FHIR R4, stored in the object store behind expiring signed links."""

from __future__ import annotations

from pathlib import Path

from medcloud.platform.context import Context
from medcloud.reports.api import router
from medcloud.reports.daily import daily_reports
from medcloud.reports.handlers import SUBSCRIPTIONS

CONTEXT = Context(
    name="reports",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    singletons=(daily_reports,),
)
