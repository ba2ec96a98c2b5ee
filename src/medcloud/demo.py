"""`medcloud demo`: an embedded server, a demo admin and a few monitors, narrated on the console."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import mailbox
import signal
import time
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path

import httpx
import orjson
import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from medcloud import simulator
from medcloud.app import create_app
from medcloud.config import MllpSettings, NotificationSettings, RateLimitSettings, Settings
from medcloud.platform.logging import configure_logging

REPORT_EVERY_SECONDS = 5.0
DEMO_WARD = "Ward 7"
FIRST_REPORT_AFTER_SECONDS = 14.0
"""Long enough for the simulated monitors' first alarm (after 10 s), so the report has one."""


class _DemoServer(uvicorn.Server):
    """The demo's server: Ctrl-C (or SIGTERM) ends the demo, which then stops the server.

    Left to uvicorn, the signal stops the server under the demo's feet (its next request fails
    with a traceback) and is raised again once the server is down (a second traceback and exit
    status 130). Here it only sets `stopping`.
    """

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def run_demo(
    *,
    port: int,
    devices: int,
    seconds: float | None,
    var_dir: Path,
    admin_email: str,
    admin_password: str,
    started: float,
    mailbox_port: int = 2525,
    mllp_port: int = 2575,
) -> None:
    """Run the demo until `seconds` pass or the server is stopped."""
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        var_dir=var_dir,
        bootstrap_admin_email=admin_email,
        bootstrap_admin_password=SecretStr(admin_password),
        # Alarms go to a mailbox the demo keeps (a Maildir under var_dir): no account anywhere.
        notifications=NotificationSettings(demo_mailbox_port=mailbox_port, public_url=base),
        # Monitor gateways on this machine may send HL7 v2 (the local interface takes them).
        mllp=MllpSettings(port=mllp_port),
        # The demo's console polls the fleet as a dashboard would, (devices + 1) requests every
        # few seconds as the admin: over the reference gateway's 1,000 an hour within the
        # half hour. The per-minute limit stays as deployed.
        rate_limits=RateLimitSettings(default="100/minute;20000/hour"),
    )
    configure_logging(settings.log_level)
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    stopping = asyncio.Event()
    server = _DemoServer(config, stopping)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.05)
    out = Console()
    out.print(f"[bold green]medcloud demo[/] ready in {time.monotonic() - started:.1f} s at {base}")
    out.print(f"  dashboard: {base}/  (sign in as the admin below)")
    out.print(f"  admin:    {admin_email}")
    out.print(f"  password: {admin_password}")
    out.print(f"  API docs: {base}/docs   metrics: {base}/metrics   readiness: {base}/ready")
    # soft_wrap: a command is copied whole, so it must not be broken over lines.
    out.print(
        "  try:      curl -s -X POST "
        f"{base}/api/v1/auth/token -d username={admin_email} -d password={admin_password}",
        soft_wrap=True,
    )
    out.print(
        f"  tour:     MEDCLOUD={base} PASSWORD={admin_password} bash docs/tour.sh",
        soft_wrap=True,
    )
    maildir = var_dir / "mailbox"
    transport = simulator.WaitOutLimits()
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as client:
        token = await simulator.admin_token(client, admin_email, admin_password)
        headers = {"Authorization": f"Bearer {token}"}
        await _on_call(client, headers, admin_email)
        out.print(f"  on call:  {admin_email}, told by email (SMTP on 127.0.0.1:{mailbox_port})")
        out.print(f"  mailbox:  {maildir} (a Maildir: `mutt -f {maildir}` opens it)")
        out.print(f"  live:     curl -N -H 'Authorization: Bearer …' {base}/api/v1/alerts/stream")
        out.print(f"  HL7 v2:   MLLP on 127.0.0.1:{mllp_port} (PCD-01 ORU^R01, ADT A01/A04/A08)")
        ward = await client.post("/api/v1/wards", json={"name": DEMO_WARD}, headers=headers)
        ward.raise_for_status()
        fleet = await simulator.register_fleet(
            client, token, devices, prefix="DEMO", ward_id=ward.json()["id"]
        )
        out.print(
            f"  streaming vitals from {len(fleet)} simulated monitors on {DEMO_WARD}, "
            "1 reading/s each\n"
        )
        reported = asyncio.create_task(_first_report(client, headers, ward.json()["id"], out))
        live = asyncio.create_task(_follow_stream(base, headers, out))
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
        shown: set[str] = set()
        mailed: set[str] = set()
        stopped = asyncio.create_task(stopping.wait())
        try:
            while not (serving.done() or streaming.done() or stopping.is_set()):
                await asyncio.wait(
                    {serving, streaming, stopped},
                    timeout=REPORT_EVERY_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopping.is_set():
                    break
                await _report(client, headers, fleet, shown, out)
                _report_mail(maildir, mailed, out)
        finally:
            for task in (streaming, live, stopped, reported):
                task.cancel()
            await asyncio.gather(streaming, live, stopped, reported, return_exceptions=True)
    server.should_exit = True
    await serving
    if stopping.is_set():
        out.print("[bold green]medcloud demo[/] stopped; its data stays in " + str(var_dir))


async def _on_call(client: httpx.AsyncClient, headers: dict[str, str], email: str) -> None:
    """Put the demo admin on call for the whole organisation, reached by email."""
    me = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
    await client.put(
        f"/api/v1/notifications/recipients/{me}",
        json={"email": email, "channels": {"high": ["email"], "medium": ["email"]}},
        headers=headers,
    )
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    response = await client.post(
        "/api/v1/on-call",
        json={
            "user_id": me,
            "duty": "primary",
            "starts_at": start.isoformat(),
            "ends_at": (start + dt.timedelta(days=1)).isoformat(),
        },
        headers=headers,
    )
    response.raise_for_status()


async def _first_report(
    client: httpx.AsyncClient, headers: dict[str, str], ward_id: str, out: Console
) -> None:
    """Once the ward has a little history, report on its day so far, as a nurse would ask."""
    await asyncio.sleep(FIRST_REPORT_AFTER_SECONDS)
    day = dt.datetime.now(dt.UTC).date().isoformat()
    response = await client.post(
        "/api/v1/reports",
        json={"scope": "ward", "ward_id": ward_id, "patient_id": None, "day": day},
        headers=headers,
    )
    response.raise_for_status()
    out.print(
        f"[bold blue]REPORT[/] {DEMO_WARD}, {day}: PDF, CSV and FHIR Bundle on the dashboard's "
        "reports page (POST /api/v1/reports)"
    )


async def _follow_stream(base: str, headers: dict[str, str], out: Console) -> None:
    """Print each alarm change as the live stream (Server-Sent Events) delivers it."""
    async with (
        # The server sends a comment at least every 15 s on a quiet stream.
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=60)) as client,
        client.stream("GET", "/api/v1/alerts/stream", headers=headers) as response,
    ):
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                alarm = orjson.loads(line[6:])
                out.print(
                    f"[bold magenta]LIVE[/]  {kind}: {alarm['priority']} {alarm['rule']} "
                    "(GET /api/v1/alerts/stream)"
                )


def _report_mail(maildir: Path, mailed: set[str], out: Console) -> None:
    """Print the subject of each email that arrived in the demo's mailbox since last time."""
    if not (maildir / "new").is_dir():
        return
    for key, message in mailbox.Maildir(maildir, create=False).items():
        if key in mailed:
            continue
        mailed.add(key)
        subject = str(make_header(decode_header(message.get("Subject", ""))))
        out.print(f"[bold cyan]EMAIL[/] to {message.get('To')}: {subject}")


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
