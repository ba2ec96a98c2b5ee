"""The README's tour, run verbatim against a live demo, so the README cannot drift from medcloud."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
TOUR = ROOT / "docs" / "tour.sh"


def readme_tour() -> str:
    """The shell block under the README's tour heading."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## A quick tour of the API\n.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert found, "the README has no tour"
    return found.group(1)


def test_the_readme_shows_the_tour_script_verbatim() -> None:
    assert readme_tour() == TOUR.read_text()


def test_the_tour_runs_step_by_step_against_the_demo(tmp_path: Path) -> None:
    port = free_port()
    args = ["demo", "--port", str(port), "--mailbox-port", str(free_port())]
    args += ["--mllp-port", str(free_port())]
    home = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)}
    with subprocess.Popen(
        [sys.executable, "-m", "medcloud.cli", *args, "--var-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=home,
        cwd=tmp_path,
    ) as demo:
        assert demo.stdout is not None
        password = None
        for line in demo.stdout:
            if line.strip().startswith("password:"):
                password = line.split()[-1]
            if "streaming vitals" in line:  # ready, and the admin is on call
                break
        assert password, "the demo printed no password"
        try:
            tour = subprocess.run(
                ["bash", "-euo", "pipefail", str(TOUR)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={**home, "MEDCLOUD": f"http://127.0.0.1:{port}", "PASSWORD": password},
                cwd=tmp_path,
            )
        finally:
            demo.send_signal(signal.SIGINT)
            demo.communicate(timeout=60)
    assert tour.returncode == 0, tour.stdout + tour.stderr
    out = tour.stdout
    assert '"stored":2' in out
    assert '"heart_rate"' in out or '"spo2"' in out
    assert '"priority": "high"' in out and '"rule": "heart_rate_high"' in out
    assert '"state": "acknowledged"' in out
    assert '"status":"ready"' in out
