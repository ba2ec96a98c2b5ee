"""The `medcloud reports` commands: the daily run, once (what a Kubernetes CronJob calls)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import typer
from rich.console import Console

reports_app = typer.Typer(help="Daily and on-demand reports.", no_args_is_help=True)
console = Console(soft_wrap=True)


@reports_app.callback()
def main() -> None:
    """Daily and on-demand reports."""


@reports_app.command()
def daily(
    day: Annotated[
        str, typer.Option(help="Report this UTC day (YYYY-MM-DD); default: every day owed.")
    ] = "",
) -> None:
    """Make the daily reports once; safe alongside running schedulers and other runs."""
    from medcloud.bootstrap import bootstrap
    from medcloud.config import Settings
    from medcloud.reports.daily import run_once
    from medcloud.reports.schemas import DailyRun

    try:
        asked = dt.date.fromisoformat(day) if day else None
    except ValueError:
        raise typer.BadParameter("the day is YYYY-MM-DD", param_hint="--day") from None

    async def run() -> DailyRun:
        runtime = bootstrap(Settings())
        try:
            return await run_once(runtime, day=asked)
        finally:
            await runtime.database.dispose()

    result = asyncio.run(run())
    days = ", ".join(d.isoformat() for d in result.days) or "none owed"
    console.print(f"reports made: {result.made} (days: {days})")
