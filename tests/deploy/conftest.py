"""The offline validators of deploy/, from the virtualenv `make deploy-tools` fills.

`make test` installs them first; run alone, a test whose validator is missing fails under CI and
is skipped elsewhere with the command that installs it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOLS = Path(os.environ.get("MEDCLOUD_DEPLOY_TOOLS", ROOT / ".venv-deploy" / "bin"))

Tool = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def deploy_tool() -> Tool:
    """Run one of the validators by name; its output is returned, never printed."""

    def run(name: str, *args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        executable = TOOLS / name
        if not executable.exists():
            message = f"{executable} is missing: run `make deploy-tools`"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        command: Sequence[str | Path] = (executable, *args)
        return subprocess.run(
            [str(part) for part in command],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    return run
