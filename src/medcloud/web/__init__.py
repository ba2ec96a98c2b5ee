"""The clinician dashboard at `/`: server-rendered pages that are clients of the API.

Templates render the API's own answers, fetched in-process with the signed-in user's token
(`client.py`), so the dashboard has no authorisation or audit of its own to drift from the
API's. Vendored htmx and uPlot (`static/vendor/`) add live updates and charts; every page and
form works before they load.
"""

from __future__ import annotations

from fastapi import FastAPI

from medcloud.web.pages import routes

NEEDS = frozenset({"identity", "devices", "ingest", "notifications", "analytics", "audit"})
"""Contexts the pages call in-process: the dashboard is served only by a process with them all."""


def install(app: FastAPI) -> None:
    """Add the dashboard's pages to `app` (outside the OpenAPI document and the route table)."""
    app.router.routes.extend(routes())


__all__ = ["NEEDS", "install"]
