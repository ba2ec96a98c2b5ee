"""The split topology as plain processes: each context's API and worker, nginx in front.

The same shape as the Compose split profile and the Kubernetes manifests, on one machine and
without containers: `medcloud split up` starts it in the background and returns, `medcloud
split down` stops every process it started, by the pids it wrote down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from medcloud.bootstrap import ALL_CONTEXTS
from medcloud.config import Settings
from medcloud.gateway import nginx
from medcloud.gateway.routes import route_table
from medcloud.platform.datadir import open_private_file

STATE = "split.json"
ADMIN_EMAIL = "admin@split.medcloud"
SERVICES = {
    # The machine's own services, as `make split-up` finds them; MEDCLOUD_* overrides each.
    "MEDCLOUD_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/medcloud_split",
    "MEDCLOUD_BUS_URL": "amqp://guest:guest@127.0.0.1:5672/",
    "MEDCLOUD_REDIS_URL": "redis://127.0.0.1:6379/0",
    "MEDCLOUD_MQTT__URL": "mqtt://127.0.0.1:1883",
}
# The first to start: it makes the keys every other process shares and the first admin.
FIRST = "identity"


class SplitError(Exception):
    """The topology could not be started or stopped as asked."""


@dataclass
class Process:
    """One process the topology started."""

    name: str
    pid: int
    port: int | None = None
    args: list[str] = field(default_factory=list)
    """The `medcloud` command it runs (empty for nginx)."""
    env: dict[str, str] = field(default_factory=dict)
    """Settings of its own, beside the topology's (none of them secret)."""


@dataclass
class State:
    """What `up` started, written down for `down` and for tests."""

    directory: str
    listen: str
    processes: list[Process] = field(default_factory=list)
    admin_email: str = ADMIN_EMAIL

    @property
    def base_url(self) -> str:
        """The gateway's address."""
        host, _, port = self.listen.rpartition(":")
        return f"http://{host or '127.0.0.1'}:{port}"

    def save(self, directory: Path) -> None:
        """Write the state where `down` looks for it."""
        (directory / STATE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> State | None:
        """Read the state `up` wrote, if any."""
        try:
            raw = json.loads((directory / STATE).read_text())
        except FileNotFoundError:
            return None
        raw["processes"] = [Process(**each) for each in raw["processes"]]
        return cls(**raw)


def up(
    directory: Path,
    *,
    listen: str = "127.0.0.1:8080",
    contexts: Sequence[str] = ALL_CONTEXTS,
    replicas: Mapping[str, int] | None = None,
    worker_replicas: Mapping[str, int] | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> State:
    """Start every context's API and worker and nginx in front; return once all are ready.

    `replicas` runs more than one API process of a context behind nginx, `worker_replicas`
    more than one worker (ingest's share the MQTT telemetry, each under a client id of its
    own). Settings come from `environ` (default: this process's), the machine's local services
    filling what is unset.
    """
    if State.load(directory) is not None:
        raise SplitError(f"{directory} already runs a split topology: `medcloud split down`")
    nginx_binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx_binary).exists():
        raise SplitError("nginx is not installed (Debian: apt-get install nginx)")
    # Not private as a whole: nginx's workers, which drop root, keep their buffers in it. What
    # is secret in it is: the admin's password file and medcloud's own var directory.
    for place in (directory, directory / "logs", directory / "nginx"):
        place.mkdir(parents=True, exist_ok=True)
    env = _environment(directory, environ if environ is not None else os.environ)
    workers = {context: (worker_replicas or {}).get(context, 1) for context in contexts}
    if workers.get("ingest", 1) > 1:
        env.setdefault("MEDCLOUD_MQTT__WORKER_CLIENT_IDS", json.dumps(_ingest_ids(workers)))
    state = State(directory=str(directory), listen=listen)
    try:
        asyncio.run(_ensure_database(env["MEDCLOUD_DATABASE_URL"]))
        _run(["migrate"], env, directory / "logs" / "migrate.log", timeout)
        upstreams: dict[str, list[str]] = {}
        ordered = sorted(contexts, key=lambda name: name != FIRST)
        for context in ordered:
            for replica in range((replicas or {}).get(context, 1)):
                port = _free_port()
                name = f"{context}-api" + (f"-{replica + 1}" if replica else "")
                command = ["serve", "--port", str(port), "--contexts", context, "--no-workers"]
                state.processes.append(_start(name, command, env, directory, port))
                upstreams.setdefault(context, []).append(f"127.0.0.1:{port}")
            if context == FIRST:
                # The others read the keys it writes; starting them together would race.
                _wait_ready(next(p for p in state.processes if p.name == f"{FIRST}-api"), timeout)
            for replica in range(workers[context]):
                name = f"{context}-worker" + (f"-{replica + 1}" if replica else "")
                own = (
                    {"MEDCLOUD_MQTT__CLIENT_ID": _ingest_ids(workers)[replica]}
                    if context == "ingest" and workers[context] > 1
                    else {}
                )
                command = ["worker", "--contexts", context]
                state.processes.append(_start(name, command, env, directory, own=own))
            state.save(directory)
        for process in state.processes:
            if process.port is not None:
                _wait_ready(process, timeout)
        table = route_table(Settings(_env_file=None, max_body_bytes=_body_limit(env)), contexts)
        conf = directory / "nginx.conf"
        runtime = directory / "nginx"
        conf.write_text(nginx.render(table, upstreams, listen=listen, runtime_dir=runtime))
        started = subprocess.run(
            [nginx_binary, "-c", str(conf), "-p", str(runtime), "-e", str(runtime / "error.log")],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode:
            raise SplitError(f"nginx did not start: {started.stderr.strip()}")
        pid = int((runtime / "nginx.pid").read_text())
        state.processes.append(Process("nginx", pid, _port_of(listen)))
        state.save(directory)
        _wait_ready(Process("gateway", pid, _port_of(listen)), timeout, path="/health")
    except BaseException:
        down(directory, state=state)
        raise
    return state


def down(directory: Path, *, state: State | None = None, grace: float = 30.0) -> list[str]:
    """Stop every process `up` started in `directory`; return their names."""
    state = state or State.load(directory)
    if state is None:
        return []
    # nginx first, so no request reaches a service that is stopping; then APIs and workers.
    ordered = sorted(state.processes, key=lambda process: process.name != "nginx")
    for process in ordered:
        if running(process):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in ordered:
        while running(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running(process):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        (directory / STATE).unlink()
    return [process.name for process in ordered]


def restart(
    state: State, name: str, *, environ: Mapping[str, str] | None = None, timeout: float = 120.0
) -> Process:
    """Start process `name` again, as it was started, once it has stopped (killing it first
    if it still runs); return it, ready if it serves HTTP. `environ` as `up` had it."""
    directory = Path(state.directory)
    index, old = next((i, p) for i, p in enumerate(state.processes) if p.name == name)
    if not old.args:
        raise SplitError(f"{name} is not a medcloud process")
    if running(old):
        with contextlib.suppress(ProcessLookupError):
            os.kill(old.pid, signal.SIGKILL)
        while running(old):
            time.sleep(0.05)
    env = _environment(directory, environ if environ is not None else os.environ)
    new = _start(name, old.args, env, directory, old.port, own=old.env)
    state.processes[index] = new
    state.save(directory)
    if new.port is not None:
        _wait_ready(new, timeout)
    return new


def admin_password(directory: Path) -> str:
    """The first admin's password, which `up` wrote beside its state."""
    return (directory / "admin-password").read_text().strip()


def _environment(directory: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env = dict(environ)
    for name, default in SERVICES.items():
        env.setdefault(name, default)
    env.setdefault("MEDCLOUD_VAR_DIR", str(directory / "var"))
    env.setdefault("MEDCLOUD_LOG_LEVEL", "WARNING")
    env["MEDCLOUD_MIGRATE_ON_START"] = "false"
    password_file = directory / "admin-password"
    if not password_file.exists():
        with os.fdopen(open_private_file(password_file, os.O_WRONLY | os.O_CREAT), "w") as out:
            out.write(secrets.token_urlsafe(16) + "\n")
    env.setdefault("MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
    env.setdefault("MEDCLOUD_BOOTSTRAP_ADMIN_PASSWORD", admin_password(directory))
    return env


async def _ensure_database(url: str) -> None:
    """Create the database the URL names on its server, unless it exists or is not PostgreSQL."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgresql"):
        return
    name = parts.path.lstrip("/")
    server = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    connection = await asyncpg.connect(server)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def _body_limit(env: Mapping[str, str]) -> int:
    return int(env.get("MEDCLOUD_MAX_BODY_BYTES", Settings.model_fields["max_body_bytes"].default))


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "medcloud.cli", *args]


def _run(args: list[str], env: Mapping[str, str], log: Path, timeout: float) -> None:
    with log.open("ab") as out:
        finished = subprocess.run(
            _command(*args), env=dict(env), stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if finished.returncode:
        raise SplitError(f"`medcloud {' '.join(args)}` failed: see {log}")


def _ingest_ids(workers: Mapping[str, int]) -> list[str]:
    """The MQTT client ids of the ingest workers, one each: a shared subscription's members."""
    return [f"medcloud-ingest-{n + 1}" for n in range(workers.get("ingest", 1))]


def _start(
    name: str,
    args: list[str],
    env: Mapping[str, str],
    directory: Path,
    port: int | None = None,
    *,
    own: Mapping[str, str] | None = None,
) -> Process:
    with (directory / "logs" / f"{name}.log").open("ab") as out:
        # A session of its own: the processes outlive the command that started them, and a
        # Ctrl-C in that terminal does not reach them.
        child = subprocess.Popen(
            _command(*args),
            env=dict(env) | dict(own or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, child.pid, port, args, dict(own or {}))


def _wait_ready(process: Process, timeout: float, *, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{process.port}{path}"
    while time.monotonic() < deadline:
        if not _alive(process.pid):
            raise SplitError(f"{process.name} stopped while starting: see its log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SplitError(f"{process.name} was not ready after {timeout:g} s")


def running(process: Process) -> bool:
    """Whether the process `up` started still runs (by its pid, which may have been reused)."""
    if not _alive(process.pid):
        return False
    try:
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"medcloud" in command or b"nginx" in command


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child that exited but was not reaped yet is not running.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])
