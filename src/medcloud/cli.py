"""The `medcloud` command: serve, worker, migrate, demo, simulate."""

from __future__ import annotations

import asyncio
import importlib
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from medcloud.bootstrap import ALL_CONTEXTS

app = typer.Typer(
    help="medcloud: a cloud platform for connected medical devices.", no_args_is_help=True
)
console = Console(stderr=True)

ContextsOpt = Annotated[
    str, typer.Option(help="Comma-separated contexts to run, e.g. 'ingest' or 'analytics,devices'.")
]


def _contexts(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ALL_CONTEXTS))
    if unknown:
        raise typer.BadParameter(f"unknown context(s) {unknown}; known: {', '.join(ALL_CONTEXTS)}")
    return names


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    contexts: ContextsOpt = ",".join(ALL_CONTEXTS),
    workers: Annotated[
        bool, typer.Option(help="Also run the contexts' consumers and the outbox relay.")
    ] = True,
) -> None:
    """Serve the HTTP API (embedded by default: SQLite and the in-process bus)."""
    import uvicorn

    from medcloud.app import create_app
    from medcloud.config import Settings
    from medcloud.platform.logging import configure_logging
    from medcloud.platform.process import tune_garbage_collector

    settings = Settings()
    configure_logging(settings.log_level)
    application = create_app(settings, _contexts(contexts), workers=workers)
    tune_garbage_collector(settings.gc_young_threshold)
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )


@app.command()
def worker(contexts: ContextsOpt = ",".join(ALL_CONTEXTS)) -> None:
    """Run the contexts' event consumers and the outbox relay, without HTTP."""
    from medcloud.bootstrap import Lifecycle, bootstrap, load_contexts
    from medcloud.config import Settings
    from medcloud.platform.logging import configure_logging
    from medcloud.platform.process import tune_garbage_collector

    settings = Settings()
    configure_logging(settings.log_level)
    tune_garbage_collector(settings.gc_young_threshold)

    async def run() -> None:
        lifecycle = Lifecycle(bootstrap(settings), load_contexts(_contexts(contexts)))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await lifecycle.start(migrate_first=settings.migrate_on_start, workers=True)
        console.print("[green]worker running[/green]")
        try:
            await stop.wait()
        finally:
            await lifecycle.stop()

    asyncio.run(run())


@app.command()
def migrate() -> None:
    """Apply every context's database migrations."""
    from medcloud.bootstrap import bootstrap, load_contexts
    from medcloud.config import Settings
    from medcloud.platform.migrate import migrate as apply

    settings = Settings()

    async def run() -> None:
        runtime = bootstrap(settings)
        try:
            await apply(runtime.database, [c.migrations for c in load_contexts() if c.migrations])
        finally:
            await runtime.database.dispose()

    asyncio.run(run())
    console.print("[green]database is up to date[/green]")


@app.command("create-organisation")
def create_organisation(
    name: Annotated[str, typer.Option(help="The organisation's name.")],
    admin_email: Annotated[str, typer.Option(help="Email of its first admin.")],
    admin_password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="MEDCLOUD_NEW_ADMIN_PASSWORD",
        ),
    ],
) -> None:
    """Create an organisation (tenant) with its first admin."""
    from medcloud.bootstrap import Lifecycle, bootstrap
    from medcloud.config import Settings
    from medcloud.identity.service import create_organisation as create
    from medcloud.platform.errors import DomainError

    settings = Settings()

    async def run() -> str:
        runtime = bootstrap(settings)
        lifecycle = Lifecycle(runtime, [])
        await lifecycle.start(migrate_first=settings.migrate_on_start, workers=False)
        try:
            organisation_id, _ = await create(
                uow_factory=runtime.uow,
                name=name,
                admin_email=admin_email,
                admin_password=admin_password,
            )
            return organisation_id
        finally:
            await lifecycle.stop()

    try:
        organisation_id = asyncio.run(run())
    except DomainError as error:
        details = "; ".join(f"{e.field}: {e.message}" for e in error.errors)
        console.print(f"[red]{error.detail}[/red] {details}")
        raise typer.Exit(1) from error
    console.print(f"[green]organisation {organisation_id} created[/green]")


@app.command()
def simulate(
    url: Annotated[
        str, typer.Option(help="Base URL of a medcloud deployment.")
    ] = "http://127.0.0.1:8000",
    devices: Annotated[int, typer.Option(min=1, help="Devices to simulate.")] = 5,
    rate: Annotated[float, typer.Option(min=0.01, help="Readings per second per device.")] = 1.0,
    seconds: Annotated[float, typer.Option(help="Stop after this long; 0 runs until Ctrl-C.")] = 0,
    abnormal: Annotated[
        float, typer.Option(help="Chance per reading of an abnormal episode.")
    ] = 0.02,
    model: Annotated[str, typer.Option(help="Device model name to register.")] = "BedsideMonitor 3",
    manufacturer: Annotated[str, typer.Option(help="Manufacturer to register.")] = (
        "medcloud simulator"
    ),
    firmware_version: Annotated[str, typer.Option(help="Firmware the devices start on.")] = "1.0.0",
    patients: Annotated[bool, typer.Option(help="Assign each device a new patient.")] = True,
    heartbeat_seconds: Annotated[
        float, typer.Option(help="Heartbeat and update-check interval; 0 sends none.")
    ] = 30.0,
    silent_share: Annotated[float, typer.Option(help="Share of devices that go silent.")] = 0.0,
    failure_share: Annotated[
        float, typer.Option(help="Share of firmware updates that fail.")
    ] = 0.0,
    admin_email: Annotated[str, typer.Option(envvar="MEDCLOUD_ADMIN_EMAIL")] = "",
    admin_password: Annotated[str, typer.Option(envvar="MEDCLOUD_ADMIN_PASSWORD")] = "",
) -> None:
    """Register a fleet of simulated monitors and stream vitals to a deployment."""
    import httpx

    from medcloud import simulator

    if not admin_email or not admin_password:
        raise typer.BadParameter("give --admin-email and --admin-password (or MEDCLOUD_ADMIN_*)")

    async def run() -> None:
        limits = httpx.Limits(max_connections=min(devices, 200))
        transport = simulator.WaitOutLimits(httpx.AsyncHTTPTransport(limits=limits))
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as client:
            token = await simulator.admin_token(client, admin_email, admin_password)
            fleet = await simulator.register_fleet(
                client,
                token,
                devices,
                model=model,
                manufacturer=manufacturer,
                firmware_version=firmware_version,
                patients=patients,
            )
            console.print(f"registered {len(fleet)} devices; streaming {rate:g} readings/s each")
            readings = simulator.stream(
                client, fleet, rate=rate, seconds=seconds or None, abnormal_probability=abnormal
            )
            if heartbeat_seconds <= 0:
                stats = await readings
            else:
                states = [simulator.DeviceState(d, firmware_version) for d in fleet]
                device_side = simulator.operate(
                    client,
                    states,
                    interval_seconds=heartbeat_seconds,
                    seconds=seconds or None,
                    silent_share=silent_share,
                    failure_share=failure_share,
                )
                stats, updates = await asyncio.gather(readings, device_side)
                console.print(
                    f"updates: offered {updates.offered}, succeeded {updates.succeeded}, "
                    f"failed {updates.failed}, rolled back {updates.rolled_back}"
                )
            console.print(f"sent {stats.sent}, accepted {stats.accepted}, failed {stats.failed}")

    asyncio.run(run())


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port for the demo server.")] = 8000,
    devices: Annotated[int, typer.Option(min=1, help="Simulated monitors.")] = 3,
    seconds: Annotated[float, typer.Option(help="Stop after this long; 0 runs until Ctrl-C.")] = 0,
    var_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the demo keeps its data; by default where every medcloud command looks "
            "(MEDCLOUD_VAR_DIR, else ./var)."
        ),
    ] = None,
    mailbox_port: Annotated[
        int, typer.Option(help="Port of the demo's local SMTP mailbox, which alarms are mailed to.")
    ] = 2525,
    mllp_port: Annotated[
        int, typer.Option(help="Port the demo takes HL7 v2 on (MLLP), as monitor gateways send.")
    ] = 2575,
) -> None:
    """Start an embedded server with a demo admin and simulated monitors, and show what happens."""
    from medcloud.config import Settings
    from medcloud.demo import run_demo
    from medcloud.platform.datadir import make_private_directory, open_private_file

    var_dir = var_dir or Settings().var_dir
    marker = var_dir / DEMO_MARKER
    if var_dir.exists() and any(var_dir.iterdir()) and not marker.exists():
        # The demo starts afresh each time; it never deletes data it did not write.
        console.print(
            f"[red]{var_dir} holds data the demo did not write[/] (a `medcloud serve` "
            "database?); move it away or give the demo another place with --var-dir."
        )
        raise typer.Exit(1)
    for port_number in (port, mailbox_port, mllp_port):
        if not _port_free(port_number):
            console.print(
                f"[red]port {port_number} is in use[/]; choose another with --port "
                "--mailbox-port or --mllp-port."
            )
            raise typer.Exit(1)
    if var_dir.exists():
        shutil.rmtree(var_dir)
    make_private_directory(var_dir)
    with os.fdopen(open_private_file(marker, os.O_WRONLY | os.O_EXCL), "w") as file:
        file.write("written by `medcloud demo`, which empties this directory when it starts\n")
    password = secrets.token_urlsafe(12)
    os.environ.setdefault("MEDCLOUD_LOG_LEVEL", "WARNING")
    started = time.monotonic()
    asyncio.run(
        run_demo(
            port=port,
            devices=devices,
            seconds=seconds or None,
            var_dir=var_dir,
            admin_email="admin@demo.medcloud",
            admin_password=password,
            started=started,
            mailbox_port=mailbox_port,
            mllp_port=mllp_port,
        )
    )


DEMO_MARKER = ".medcloud-demo"


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


bench_app = typer.Typer(
    help="Measure a deployment (runs from a source checkout).", no_args_is_help=True
)


# Each benchmark is bench/<name>.py in the source checkout (not in the wheel); its `main(argv)`
# takes every argument, its own --help included, and prints its figures as JSON.
BENCHMARKS = {
    "ingest": (
        "Drive a fleet over HTTP or MQTT and print readings/s, latency and the COPY baseline. "
        "Options: --transport http|mqtt --devices N --seconds S [--batch B] [--url URL …]."
    ),
    "alarms": (
        "Drive readings with about 1 % abnormal and print alarm latency and correctness as "
        "JSON. Options: --deployment embedded|services --rate R --seconds S --patients N."
    ),
    "forecast": "Backtest forecasts on simulated patients; print MAE beside a last-value baseline.",
    "store": (
        "Load days of 1 Hz vitals into PostgreSQL; print bytes per reading and chart, page and "
        "latest-value latencies as JSON."
    ),
    "notify": (
        "Raise alarms at a rate against a real SMTP server; print delivery latency as JSON. "
        "Options: --deployment embedded|services --rate R --seconds S."
    ),
    "chaos": (
        "Stream readings through the split topology while RabbitMQ, PostgreSQL and processes "
        "are killed; print sent, acknowledged, stored, lost, duplicated and alarms as JSON. "
        "Options: --readings N --rabbitmq-kills K --postgres-kills K --process-kills K."
    ),
    "mllp": (
        "Send PCD-01 messages over MLLP connections; print messages/s and ACK latency as JSON. "
        "Options: --deployment postgres|embedded --connections N --seconds S."
    ),
    "signin": (
        "Time refused sign-ins (locked account, unknown email, wrong password) at the "
        "production argon2 cost; print each kind's median and p90 and the spread of medians as "
        "JSON. Options: --attempts N --deployment embedded|services."
    ),
}
"""Each benchmark's summary; `medcloud bench NAME --help` lists all its options."""


def _benchmark(name: str, summary: str) -> None:
    @bench_app.command(
        name,
        help=summary,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def run(ctx: typer.Context) -> None:
        _checkout_bench(name)
        importlib.import_module(f"bench.{name}").main(ctx.args)


for _name, _summary in BENCHMARKS.items():
    _benchmark(_name, _summary)


def _checkout_bench(name: str) -> None:
    # The benchmarks live in the checkout's bench/ package, beside src/, not in the wheel.
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "bench" / f"{name}.py").is_file():
        raise typer.BadParameter("the benchmark runs from a source checkout (bench/ not found)")
    sys.path.insert(0, str(checkout))


keys_app = typer.Typer(
    help="The data keys that seal the secrets kept in the database.", no_args_is_help=True
)


@keys_app.command("new")
def keys_new() -> None:
    """Print a new data key, to put first in MEDCLOUD_DATA_KEYS before `keys rotate`."""
    from medcloud.platform.sealing import new_key

    typer.echo(new_key())


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Seal every stored secret again under the first data key (see docs/security.md).

    With MEDCLOUD_DATA_KEYS: its first key, which every process must already know. Without it: a
    new key in the key file, the old ones dropped from it; stop medcloud first.
    """
    from medcloud.bootstrap import bootstrap, load_contexts
    from medcloud.config import Settings
    from medcloud.platform.sealing import SealBroken, rotate_keys

    settings = Settings()

    async def run() -> dict[str, int]:
        runtime = bootstrap(settings)
        load_contexts()  # every context's tables, so every sealed column is known
        try:
            return await rotate_keys(settings, runtime.database)
        finally:
            await runtime.database.dispose()

    try:
        counts = asyncio.run(run())
    except SealBroken as error:
        console.print(f"[red]nothing was changed[/red]: {error}")
        raise typer.Exit(1) from None
    for column, count in counts.items():
        console.print(f"{column}: {count} sealed again")
    console.print("[green]every stored secret is sealed under the first data key[/green]")


def _mount_subcommands() -> None:
    from medcloud.analytics.cli import analytics_app
    from medcloud.audit.cli import audit_app
    from medcloud.gateway.cli import gateway_app, split_app
    from medcloud.reports.cli import reports_app

    app.add_typer(analytics_app, name="analytics")
    app.add_typer(audit_app, name="audit")
    app.add_typer(bench_app, name="bench")
    app.add_typer(gateway_app, name="gateway")
    app.add_typer(keys_app, name="keys")
    app.add_typer(reports_app, name="reports")
    app.add_typer(split_app, name="split")


_mount_subcommands()

if __name__ == "__main__":
    app()
