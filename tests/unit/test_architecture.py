"""The shape the codebase keeps: contexts talk only through events and published interfaces."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medcloud

SRC = Path(medcloud.__file__).parent
# Not contexts: the kernel every context stands on, and the two that stand on all of them, the
# serverless functions and the gateway (the edge's configuration, read from every router).
OUTSIDE = ("platform", "functions", "gateway", "web")
CONTEXTS = sorted(
    p.name
    for p in SRC.iterdir()
    if p.is_dir() and (p / "__init__.py").exists() and p.name not in OUTSIDE
)
# What one context may import from another: the events it publishes, and the published interface
# of the devices context (wired in by the composition root).
PUBLISHED = {"events", "directory"}
SAME_FILES = (
    "api.py",
    "schemas.py",
    "models.py",
    "repository.py",
    "service.py",
    "events.py",
    "handlers.py",
    "__init__.py",
)


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_context_imports_another_contexts_internals() -> None:
    offences = []
    for context in CONTEXTS:
        for path in (SRC / context).rglob("*.py"):
            for name in imports_of(path):
                parts = name.split(".")
                if len(parts) < 2 or parts[0] != "medcloud" or parts[1] not in CONTEXTS:
                    continue
                if parts[1] == context:
                    continue
                if len(parts) < 3 or parts[2] not in PUBLISHED:
                    offences.append(f"{path.relative_to(SRC)} imports {name}")
    assert offences == []


def test_the_platform_kernel_imports_no_context() -> None:
    offences = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in (SRC / "platform").rglob("*.py")
        for name in imports_of(path)
        if name.split(".")[:2][-1] in CONTEXTS and name.startswith("medcloud.")
    ]
    assert offences == []


@pytest.mark.parametrize("outside", ["functions", "gateway"])
def test_no_context_or_the_kernel_imports_the_functions_or_the_gateway(outside: str) -> None:
    importers = [
        path.relative_to(SRC)
        for path in SRC.rglob("*.py")
        if outside not in path.relative_to(SRC).parts
        # The command line mounts the gateway's commands, as it mounts every context's.
        and path != SRC / "cli.py"
        and any(name.startswith(f"medcloud.{outside}") for name in imports_of(path))
    ]
    assert importers == []


def test_every_context_has_the_same_file_names() -> None:
    missing = [
        f"{context}/{name}"
        for context in CONTEXTS
        for name in SAME_FILES
        if not (SRC / context / name).exists()
    ]
    assert missing == []


def test_the_architecture_test_sees_the_contexts() -> None:
    assert {"identity", "devices", "ingest", "analytics"} <= set(CONTEXTS)


def test_importing_medcloud_does_no_io(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import socket, builtins\n"
        "def refuse(*a, **k): raise AssertionError('network I/O at import time')\n"
        "socket.socket.connect = refuse\n"
        "import medcloud.app, medcloud.cli, medcloud.bootstrap\n"
        "import medcloud.identity, medcloud.devices, medcloud.ingest, medcloud.analytics\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written (no ./var created on import)


def test_every_route_dependency_runs_on_the_event_loop(tmp_path: Path) -> None:
    # FastAPI runs a plain `def` dependency on a worker thread: a thread hop on every request
    # that uses it, which costs more than what such a dependency does (platform/http.py).
    import inspect

    from fastapi.dependencies.models import Dependant

    from medcloud.app import create_app
    from medcloud.config import Settings
    from tests.security.routes import walk

    def calls(dependant: Dependant) -> list[object]:
        found: list[object] = [] if dependant.call is None else [dependant.call]
        for sub in dependant.dependencies:
            found += calls(sub)
        return found

    def on_the_loop(call: object) -> bool:
        if inspect.isclass(call):
            return False  # constructed on a worker thread, as a plain function is
        method = call if inspect.isroutine(call) else type(call).__call__
        return inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)

    app = create_app(Settings(var_dir=tmp_path / "var"), workers=False)
    routes = list(walk(app))
    threaded = {
        f"{route.path} ({' '.join(sorted(route.methods or ()))}): {getattr(call, '__name__', call)}"
        for route in routes
        for call in calls(route.dependant)
        if not on_the_loop(call)
    }
    assert routes and threaded == set()
