"""The commands a newcomer and an operator run, as real processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from medcloud.config import Settings
from tests.support.client import now, reading
from tests.support.processes import free_port, medcloud, settings_env

ADMIN = {"username": "alice.admin@stmary.example", "password": "alice-admin-passphrase"}


def wait_ready(base: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{base} never became ready:\n{log.read_text()[-3000:]}")


def alerts_after_abnormal_reading(base: str, timeout: float = 30) -> list[dict[str, object]]:
    with httpx.Client(base_url=base, timeout=10) as client:
        token = client.post("/api/v1/auth/token", data=ADMIN).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        device = client.post(
            "/api/v1/devices",
            json={"serial_number": "E2E-1", "model": "m", "manufacturer": "x"},
            headers=auth,
        ).json()
        sent = client.post(
            f"/api/v1/devices/{device['id']}/data",
            json=reading(now(), heart_rate=171),
            headers={"Authorization": f"Bearer {device['token']}"},
        )
        assert sent.status_code == 201, sent.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Physiological alarms only: with nobody on call in a new deployment, each also
            # raises a technical alarm that nobody could be told.
            items: list[dict[str, object]] = client.get(
                "/api/v1/alerts", params={"source": "clinical"}, headers=auth
            ).json()["items"]
            if items:
                return items
            time.sleep(0.1)
    return []


@pytest.mark.empty_database  # serve must migrate it
def test_serve_migrates_bootstraps_and_raises_alerts(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = settings_env(
        settings,
        MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL=ADMIN["username"],
        MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD=ADMIN["password"],
    )
    log = tmp_path / "serve.log"
    with medcloud("serve", "--port", str(port), env=env, log=log):
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, log)
        alerts = alerts_after_abnormal_reading(base)
        assert [a["value"] for a in alerts] == [171]


# An in-process bus cannot span processes: split deployments exist only on the real services.
@pytest.mark.services
@pytest.mark.parametrize("backend", ["services"])
def test_split_services_work_together_over_rabbitmq(
    backend: str, settings: Settings, tmp_path: Path
) -> None:
    """The API without consumers in one process, analytics and devices consumers in another."""
    port = free_port()
    env = settings_env(
        settings,
        MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL=ADMIN["username"],
        MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD=ADMIN["password"],
    )
    log = tmp_path / "split.log"
    api_args: tuple[str, ...] = (
        "serve",
        "--port",
        str(port),
        "--contexts",
        "identity,devices,ingest",
    )
    api_args += ("--no-workers",)
    with (
        medcloud(*api_args, env=env, log=log),
        medcloud("worker", "--contexts", "analytics,devices", env=env, log=log),
    ):
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, log)
        assert httpx.get(f"{base}/api/v1/alerts").status_code == 404  # not mounted here
        # The worker relays the API's outbox and raises the alert; read it from the database.
        with httpx.Client(base_url=base) as client:
            token = client.post("/api/v1/auth/token", data=ADMIN).json()["access_token"]
            device = client.post(
                "/api/v1/devices",
                json={"serial_number": "SPLIT-1", "model": "m", "manufacturer": "x"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            sent = client.post(
                f"/api/v1/devices/{device['id']}/data",
                json=reading(now(), heart_rate=33),
                headers={"Authorization": f"Bearer {device['token']}"},
            )
            assert sent.status_code == 201
        alerts_port = free_port()
        with medcloud(
            "serve",
            "--port",
            str(alerts_port),
            "--contexts",
            "identity,analytics",
            "--no-workers",
            env=env,
            log=log,
        ):
            alerts_base = f"http://127.0.0.1:{alerts_port}"
            wait_ready(alerts_base, log)
            deadline = time.monotonic() + 30
            items: list[dict[str, object]] = []
            with httpx.Client(base_url=alerts_base) as client:
                token = client.post("/api/v1/auth/token", data=ADMIN).json()["access_token"]
                while time.monotonic() < deadline and not items:
                    items = client.get(
                        "/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}
                    ).json()["items"]
                    time.sleep(0.1)
            assert [(a["rule"], a["value"]) for a in items] == [("heart_rate_low", 33)]


def test_the_demo_shows_readings_and_a_heart_rate_alert_within_a_minute(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medcloud.cli",
            "demo",
            "--seconds",
            "20",
            "--port",
            str(port),
            "--mailbox-port",
            str(free_port()),
            "--mllp-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=DEMO_ENV | {"HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "password:" in out
    assert "latest readings" in out
    assert "ALARM high heart_rate_" in out
    assert "dashboard: http://127.0.0.1:" in out
    assert "REPORT Ward 7" in out
    # Every other command finds what the demo wrote: ./var, as for `medcloud serve`.
    verified = subprocess.run(
        [sys.executable, "-m", "medcloud.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=DEMO_ENV | {"HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain intact" in verified.stdout + verified.stderr
    assert sorted(p.name for p in tmp_path.glob("**/medcloud.db")) == ["medcloud.db"]


DEMO_ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}


def run_demo_briefly(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medcloud.cli", "demo", "--seconds", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=DEMO_ENV | {"HOME": str(tmp_path)},
        cwd=tmp_path,
    )


def test_the_demo_never_empties_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "medcloud.db").write_bytes(b"a served database")
    result = run_demo_briefly(tmp_path, "--port", str(free_port()))
    assert result.returncode == 1
    assert "holds data the demo did not write" in result.stdout + result.stderr
    assert (tmp_path / "var" / "medcloud.db").read_bytes() == b"a served database"


def test_the_demo_names_a_port_in_use_instead_of_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_demo_briefly(tmp_path, "--port", str(port))
    out = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"port {port} is in use" in out
    assert "Traceback" not in out


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    port = free_port()
    args = ["demo", "--port", str(port), "--mailbox-port", str(free_port())]
    args += ["--mllp-port", str(free_port())]
    with subprocess.Popen(
        [sys.executable, "-m", "medcloud.cli", *args, "--var-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)},
        cwd=tmp_path,
    ) as demo:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "latest readings" in line:  # mid-run: monitors sending, the narration going
                break
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    out = "".join(lines) + rest
    assert demo.returncode == 0, out
    assert "Traceback" not in out
    assert "medcloud demo stopped" in out


def test_an_operator_creates_an_organisation_and_a_weak_admin_password_is_refused(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MEDCLOUD_VAR_DIR": str(tmp_path / "var"),
        "MEDCLOUD_NEW_ADMIN_PASSWORD": "a-long-enough-passphrase-42",
    }
    args = [sys.executable, "-m", "medcloud.cli", "create-organisation", "--name", "St Mary's"]
    created = subprocess.run(
        [*args, "--admin-email", "admin@stmary.example"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    weak = subprocess.run(
        [*args, "--admin-email", "other@stmary.example"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env | {"MEDCLOUD_NEW_ADMIN_PASSWORD": "short"},
        cwd=tmp_path,
    )
    assert weak.returncode == 1 and "password" in weak.stdout + weak.stderr
