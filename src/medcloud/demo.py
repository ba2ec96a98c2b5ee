"""`medcloud demo`: an embedded server, a demo admin and a few monitors, narrated on the console."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from medcloud import simulator
from medcloud.app import create_app
from medcloud.config import Settings
from medcloud.platform.logging import configure_logging

REPORT_EVERY_SECONDS = 5.0


async def run_demo(
    *,
    port: int,
    devices: int,
    seconds: float | None,
    var_dir: Path,
    admin_email: str,
    admin_password: str,
    started: float,
) -> None:
    """Run the demo until `seconds` pass or the server is stopped."""
    settings = Settings(
        var_dir=var_dir,
        bootstrap_admin_email=admin_email,
        bootstrap_admin_password=SecretStr(admin_password),
    )
    configure_logging(settings.log_level)
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    out = Console()
    out.print(f"[bold green]medcloud demo[/] ready in {time.monotonic() - started:.1f} s at {base}")
    out.print(f"  admin:    {admin_email}")
    out.print(f"  password: {admin_password}")
    out.print(f"  API docs: {base}/docs   metrics: {base}/metrics   readiness: {base}/ready")
    out.print(
        "  try:      curl -s -X POST "
        f"{base}/api/v1/auth/token -d username={admin_email} -d password={admin_password}"
    )
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        token = await simulator.admin_token(client, admin_email, admin_password)
        fleet = await simulator.register_fleet(client, token, devices, prefix="DEMO")
        out.print(f"  streaming vitals from {len(fleet)} simulated monitors, 1 reading/s each\n")
        streaming = asyncio.create_task(
            simulator.stream(
                client,
                fleet,
                rate=1.0,
                seconds=seconds,
                abnormal_probability=0.01,
                first_episode_after=10.0,
            )
        )
        headers = {"Authorization": f"Bearer {token}"}
        shown: set[str] = set()
        try:
            while not serving.done() and not streaming.done():
                await asyncio.wait({serving, streaming}, timeout=REPORT_EVERY_SECONDS)
                await _report(client, headers, fleet, shown, out)
        finally:
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
    server.should_exit = True
    await serving


async def _report(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    fleet: list[simulator.SimulatedDevice],
    shown: set[str],
    out: Console,
) -> None:
    table = Table(title="latest readings", title_justify="left")
    for column in ("device", "time", "heart_rate", "spo2", "respiratory_rate", "temperature"):
        table.add_column(column)
    for device in fleet:
        response = await client.get(
            f"/api/v1/devices/{device.id}/data", params={"limit": 4}, headers=headers
        )
        items = response.json().get("items", [])
        if not items:
            continue
        latest = {item["type"]: item["value"] for item in items}
        table.add_row(
            device.serial_number,
            items[0]["timestamp"][11:19],
            *(
                f"{latest.get(name, '')}"
                for name in ("heart_rate", "spo2", "respiratory_rate", "temperature")
            ),
        )
    out.print(table)
    alerts = (await client.get("/api/v1/alerts", params={"limit": 50}, headers=headers)).json()
    serials = {device.id: device.serial_number for device in fleet}
    for alert in reversed(alerts.get("items", [])):
        if alert["id"] in shown:
            continue
        shown.add(alert["id"])
        # Advisories and technical alarms may have no measurement, value or threshold.
        what = " ".join(
            f"{label}{alert[key]:g}"
            if isinstance(alert[key], float | int)
            else f"{label}{alert[key]}"
            for key, label in (("measurement", ""), ("value", ""), ("threshold", "threshold "))
            if alert.get(key) is not None
        )
        when = (alert.get("reading_timestamp") or alert["raised_at"])[11:19]
        out.print(
            f"[bold red]ALARM[/] {alert['priority']} {alert['rule']}: {what or alert['message']} "
            f"on {serials.get(alert['device_id'], '?')} at {when}"
        )
