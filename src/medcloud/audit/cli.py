"""The `medcloud audit` commands."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

audit_app = typer.Typer(help="Inspect the tamper-evident audit log.", no_args_is_help=True)
console = Console(soft_wrap=True)


@audit_app.callback()
def main() -> None:
    """Inspect the tamper-evident audit log."""


@audit_app.command()
def verify() -> None:
    """Check the whole hash chain; exit 1, naming the first bad position, if it is broken."""
    from sqlalchemy.exc import SQLAlchemyError

    from medcloud.audit.schemas import VerificationRead
    from medcloud.audit.service import verify_chain
    from medcloud.bootstrap import bootstrap
    from medcloud.config import Settings

    settings = Settings()

    async def run() -> VerificationRead:
        runtime = bootstrap(settings)
        try:
            async with runtime.read_sessions() as session:
                return await verify_chain(session=session, settings=settings)
        finally:
            await runtime.database.dispose()

    try:
        result = asyncio.run(run())
    except SQLAlchemyError as exc:
        console.print(
            f"[red]cannot read the audit log[/red] ({type(exc).__name__}); run `medcloud migrate`?"
        )
        raise typer.Exit(2) from None
    if result.ok:
        console.print(
            f"[green]audit chain intact[/green]: {result.entries_checked} entries verified"
        )
        return
    console.print(
        f"[red]audit chain broken at position {result.first_bad_position}[/red]: {result.reason} "
        f"({result.entries_checked} entries verified before it)"
    )
    raise typer.Exit(1)
