"""The `medcloud gateway` commands (proxy configuration from the route table) and `medcloud
split` (the split topology as processes on this machine)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from medcloud.bootstrap import ALL_CONTEXTS
from medcloud.config import Settings

if TYPE_CHECKING:
    from medcloud.gateway.routes import RouteTable

gateway_app = typer.Typer(
    help="Render the edge's configuration (nginx, Kong, Kubernetes Ingress) from the route table.",
    no_args_is_help=True,
)
split_app = typer.Typer(
    help="Run every context as its own processes behind nginx, on this machine.",
    no_args_is_help=True,
)
console = Console(stderr=True)

Output = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
]
Upstreams = Annotated[
    list[str] | None,
    typer.Option(
        "--upstream",
        help="context=address, once per replica (default: each context's Compose service).",
    ),
]
Directory = Annotated[
    Path, typer.Option(help="Where the topology keeps its state, logs and nginx files.")
]
DEFAULT_DIRECTORY = Path("var/split")


@gateway_app.callback()
def gateway_main() -> None:
    """Render the edge's configuration from the route table."""


@split_app.callback()
def split_main() -> None:
    """Run every context as its own processes behind nginx."""


@gateway_app.command("nginx-config")
def nginx_config(
    upstream: Upstreams = None,
    listen: Annotated[str, typer.Option(help="What nginx listens on.")] = "8080",
    output: Output = None,
) -> None:
    """nginx.conf for the split services (body limits, request ids, retries, health)."""
    from medcloud.gateway import nginx

    table = _table()
    upstreams: dict[str, list[str]] = nginx.compose_upstreams(table.contexts)
    for context, addresses in _pairs(upstream, table.contexts).items():
        upstreams[context] = addresses
    _write(nginx.render(table, upstreams, listen=listen), output)


@gateway_app.command("kong-config")
def kong_config(
    upstream: Upstreams = None,
    jwt_public_key: Annotated[
        Path | None, typer.Option(help="PEM file of the key medcloud signs people's tokens with.")
    ] = None,
    output: Output = None,
) -> None:
    """kong.yml (Kong's declarative configuration) for operators who run Kong."""
    from medcloud.gateway import kong

    settings = Settings()
    table = _table(settings)
    urls = {context: f"http://{context}:8000" for context in table.contexts}
    for context, addresses in _pairs(upstream, table.contexts).items():
        if len(addresses) > 1:
            raise typer.BadParameter("Kong takes one URL per context (put its replicas behind it)")
        urls[context] = addresses[0]
    key = jwt_public_key.read_text() if jwt_public_key else None
    _write(kong.render(table, settings, urls, jwt_public_key=key), output)


@gateway_app.command()
def ingress(
    host: Annotated[str, typer.Option(help="The host people and devices reach.")] = (
        "medcloud.example.org"
    ),
    tls_secret: Annotated[str, typer.Option(help="The Secret with the host's certificate.")] = (
        "medcloud-tls"  # noqa: S107  (a Secret's name, not its content)
    ),
    output: Output = None,
) -> None:
    """The Kubernetes Ingress objects (ingress-nginx) for the split services."""
    from medcloud.gateway import ingress as rendering

    _write(rendering.render(_table(), host=host, tls_secret=tls_secret), output)


@split_app.command()
def up(
    directory: Directory = DEFAULT_DIRECTORY,
    listen: Annotated[str, typer.Option(help="Where nginx listens.")] = "127.0.0.1:8080",
    replicas: Annotated[
        list[str] | None, typer.Option("--replicas", help="context=N API processes, e.g. ingest=2.")
    ] = None,
    worker_replicas: Annotated[
        list[str] | None,
        typer.Option("--worker-replicas", help="context=N worker processes, e.g. ingest=2."),
    ] = None,
) -> None:
    """Start each context's API and worker and nginx in front; return once all are ready.

    Settings come from MEDCLOUD_* in the environment; what is unset uses this machine's
    PostgreSQL (database medcloud_split), RabbitMQ, Redis and Mosquitto.
    """
    from medcloud.gateway import topology

    try:
        state = topology.up(
            directory.resolve(),
            listen=listen,
            replicas=_counts(replicas, "--replicas"),
            worker_replicas=_counts(worker_replicas, "--worker-replicas"),
        )
    except topology.SplitError as exc:
        console.print(f"[red]the split topology did not start[/red]: {exc}")
        raise typer.Exit(1) from None
    for process in state.processes:
        where = f" on :{process.port}" if process.port else ""
        console.print(f"  {process.name} (pid {process.pid}){where}")
    console.print(
        f"[green]medcloud runs split behind nginx at {state.base_url}[/green]; sign in as "
        f"{state.admin_email} with the password in {directory / 'admin-password'}"
    )


@split_app.command()
def down(directory: Directory = DEFAULT_DIRECTORY) -> None:
    """Stop every process `medcloud split up` started."""
    from medcloud.gateway import topology

    stopped = topology.down(directory.resolve())
    console.print(f"stopped {len(stopped)} processes" if stopped else "nothing was running")


def _table(settings: Settings | None = None) -> RouteTable:
    # Reading the routers imports every context: only the commands that need it pay for it.
    from medcloud.gateway.routes import route_table

    return route_table(settings or Settings())


def _pairs(values: list[str] | None, known: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """`context=value` options, grouped by context (a context may be named more than once)."""
    pairs: dict[str, list[str]] = {}
    for value in values or []:
        context, sep, rest = value.partition("=")
        if not sep or not rest:
            raise typer.BadParameter(f"{value!r} is not context=value")
        if context not in known:
            raise typer.BadParameter(f"unknown context {context!r}; known: {', '.join(known)}")
        pairs.setdefault(context, []).append(rest)
    return pairs


def _counts(values: list[str] | None, option: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for context, given in _pairs(values, ALL_CONTEXTS).items():
        if len(given) != 1 or not given[0].isdigit() or int(given[0]) < 1:
            raise typer.BadParameter(f"{option} {context}= takes one whole number from 1")
        counts[context] = int(given[0])
    return counts


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    console.print(f"wrote {output}")
