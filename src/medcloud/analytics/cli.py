"""The `medcloud analytics` commands: train, register and list anomaly models."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

analytics_app = typer.Typer(help="Anomaly models and other analytics tasks.", no_args_is_help=True)
console = Console(soft_wrap=True)
T = TypeVar("T")


@analytics_app.callback()
def main() -> None:
    """Anomaly models and other analytics tasks."""


def _run(task: Callable[..., Awaitable[T]]) -> T:
    from medcloud.bootstrap import bootstrap
    from medcloud.config import Settings

    async def run() -> T:
        runtime = bootstrap(Settings())
        try:
            return await task(runtime)
        finally:
            await runtime.database.dispose()

    return asyncio.run(run())


def _show(model: object) -> None:
    from medcloud.analytics.schemas import ModelRead

    assert isinstance(model, ModelRead)  # noqa: S101
    console.print_json(model.model_dump_json(exclude={"error"} if model.error is None else None))


@analytics_app.command()
def train(
    days: Annotated[
        float, typer.Option(help="Train on the stored readings of this many days.")
    ] = 7,
    end: Annotated[str, typer.Option(help="End of the range (RFC 3339); default now.")] = "",
    organisation: Annotated[str, typer.Option(help="Only this organisation's patients.")] = "",
    seed: Annotated[int, typer.Option(help="Seed of the model's randomness.")] = 0,
    output: Annotated[Path | None, typer.Option(help="Also write the ONNX file here.")] = None,
) -> None:
    """Train the anomaly model on stored readings, evaluate, register and activate it."""
    from medcloud.analytics.modelling import train_model

    until = dt.datetime.fromisoformat(end) if end else dt.datetime.now(dt.UTC)
    start = until - dt.timedelta(days=days)

    async def task(runtime: object) -> object:
        from medcloud.platform.runtime import Runtime

        assert isinstance(runtime, Runtime)  # noqa: S101
        return await train_model(
            uow_factory=runtime.uow,
            readings=runtime.readings,
            start=start,
            end=until,
            organisation_id=organisation or None,
            seed=seed,
        )

    try:
        model = _run(task)
    except ValueError as exc:
        console.print(f"[red]not trained[/red]: {exc}")
        raise typer.Exit(1) from None
    if output is not None:
        output.write_bytes(_model_bytes(model))
    _show(model)


def _model_bytes(model: object) -> bytes:
    from medcloud.analytics import repository
    from medcloud.analytics.schemas import ModelRead

    assert isinstance(model, ModelRead)  # noqa: S101

    async def task(runtime: object) -> bytes:
        from medcloud.platform.runtime import Runtime

        assert isinstance(runtime, Runtime)  # noqa: S101
        async with runtime.read_sessions() as session:
            rows = await repository.models(session)
        return next(row.onnx for row in rows if row.version == model.version)

    return _run(task)


@analytics_app.command("register-model")
def register_model(
    path: Annotated[Path, typer.Argument(help="An ONNX anomaly model.", exists=True)],
    threshold: Annotated[float, typer.Option(help="Scores above this are anomalies.")],
) -> None:
    """Register an ONNX model trained elsewhere; it becomes active only if it loads and fits."""
    from medcloud.analytics.anomaly import ModelRejected
    from medcloud.analytics.modelling import register_model as register

    onnx = path.read_bytes()

    async def task(runtime: object) -> object:
        from medcloud.platform.runtime import Runtime

        assert isinstance(runtime, Runtime)  # noqa: S101
        return await register(uow_factory=runtime.uow, onnx=onnx, threshold=threshold)

    try:
        model = _run(task)
    except ModelRejected as exc:
        console.print(f"[red]model refused[/red]: {exc}; the active model stays in use")
        raise typer.Exit(1) from None
    _show(model)


@analytics_app.command()
def models() -> None:
    """List registered anomaly models, newest first."""
    from medcloud.analytics.modelling import list_models

    async def task(runtime: object) -> object:
        from medcloud.platform.runtime import Runtime

        assert isinstance(runtime, Runtime)  # noqa: S101
        return await list_models(uow_factory=runtime.uow)

    for model in _run(task):  # type: ignore[attr-defined]
        _show(model)
