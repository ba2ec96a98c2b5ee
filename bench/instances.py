"""PostgreSQL, RabbitMQ, Mosquitto and medcloud processes of a run's own, that it may crash.

Each instance lives in a directory of the run's own, listens on free loopback ports and is
started in a process group of its own, so SIGKILL reaches the server and every child it forked
(PostgreSQL's backends, the Erlang VM's helpers) and nothing else. An instance restarts on the
same data and the same port, as a crashed server does. Every group a run started is killed
when the run ends, even on an error or an interpreter exit, and `leftovers()` names any pid
still alive afterwards. The machine's shared services are never touched.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

from bench.deployment import free_port

POSTGRES_BIN = Path(os.environ.get("MEDCLOUD_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
RABBITMQ_SERVER = Path(
    os.environ.get("MEDCLOUD_RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server")
)
START_TIMEOUT_SECONDS = 60.0

_started: set[int] = set()
"""Process groups this interpreter started and has not yet seen end."""


def missing_binaries() -> list[str]:
    """What a chaos run needs and this machine lacks."""
    from tests.support.mosquitto import PLUGIN_PATHS

    wanted = {
        "PostgreSQL (initdb, postgres)": (POSTGRES_BIN / "initdb").exists()
        and (POSTGRES_BIN / "postgres").exists(),
        "rabbitmq-server": RABBITMQ_SERVER.exists(),
        "mosquitto": bool(shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")),
        "mosquitto_ctrl": bool(shutil.which("mosquitto_ctrl")),
        "Mosquitto's dynamic-security plugin": bool(os.environ.get("MEDCLOUD_TEST_DYNSEC_PLUGIN"))
        or any(Path(path).exists() for path in PLUGIN_PATHS),
    }
    return [name for name, found in wanted.items() if not found]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@atexit.register
def _kill_everything_started() -> None:
    for pgid in list(_started):
        _kill_group(pgid)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        # A process may end between being listed and being asked (os.getpgid then raises).
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
    return members


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@dataclass
class Group:
    """One started program in a process group of its own: crash it, start it again."""

    name: str
    argv: Sequence[str]
    log: Path
    env: dict[str, str] | None = None
    user: str | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pids: set[int] = field(default_factory=set)
    """Every pid this group has had (parents and the children seen), for the final check."""
    kills: int = 0

    def start(self) -> None:
        """Start the program (again)."""
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(self.argv),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
                group=self.user,
                cwd=self.cwd,
            )
        self.pids.add(self.popen.pid)
        _started.add(self.popen.pid)

    @property
    def running(self) -> bool:
        """Whether the group's leader is alive."""
        return self.popen is not None and self.popen.poll() is None

    def crash(self) -> None:
        """SIGKILL the whole group, as a power cut would, and wait until none of it runs."""
        if self.popen is None:
            return
        pgid = self.popen.pid
        self.pids.update(_group_members(pgid))
        _kill_group(pgid)
        self.popen.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _group_members(pgid) and time.monotonic() < deadline:
            _kill_group(pgid)
            time.sleep(0.05)
        _started.discard(pgid)
        self.kills += 1

    def stop(self) -> None:
        """Stop the group for good (SIGTERM, then SIGKILL after a grace period)."""
        if self.popen is None:
            return
        pgid = self.popen.pid
        self.pids.update(_group_members(pgid))
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(pgid)
        self.popen.wait(timeout=30)
        _started.discard(pgid)

    def leftovers(self) -> list[int]:
        """Pids of this group still alive (none, once stopped)."""
        return sorted(pid for pid in self.pids if _alive(pid))

    def tail(self, lines: int = 30) -> str:
        """The end of the program's log, for error messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _wait_for(check: Callable[[], bool], group: Group, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        if not group.running:
            raise RuntimeError(f"{group.name} exited while starting:\n{group.tail()}")
        time.sleep(0.05)
    raise RuntimeError(
        f"{group.name} was not {what} in {START_TIMEOUT_SECONDS:g} s:\n{group.tail()}"
    )


class Postgres:
    """A PostgreSQL cluster of the run's own (fsync on, as in production)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        # initdb refuses root: the cluster belongs to the `postgres` user when we are root.
        self.user = "postgres" if os.geteuid() == 0 else None
        directory.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(directory, account.pw_uid, account.pw_gid)
        self.data = directory / "data"
        self.group = Group(
            "postgres",
            [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
            ],
            directory.parent / "postgres.log",
            user=self.user,
            cwd=directory,
        )

    @property
    def dsn(self) -> str:
        """The asyncpg DSN of the run's database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/medcloud"

    def init(self) -> None:
        """Create the cluster and the run's database, and start it."""
        subprocess.run(
            [
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",  # initialisation only; the server itself runs with fsync on
            ],
            user=self.user,
            group=self.user,
            cwd=self.directory,
            capture_output=True,
            check=True,
            timeout=120,
        )
        self.start()
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        asyncio.run(_execute(admin, "CREATE DATABASE medcloud"))

    def start(self) -> None:
        """Start the server on its data (crash recovery runs first) and wait for queries."""
        self.group.start()
        _wait_for(self._answers, self.group, "answering queries")

    def _answers(self) -> bool:
        if not _port_open(self.port):
            return False
        try:
            asyncio.run(_execute(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", ""))
        except (OSError, asyncpg.PostgresError):
            return False
        return True


async def _execute(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(sql or "SELECT 1")
    finally:
        await connection.close()


class RabbitMQ:
    """A RabbitMQ node of the run's own: its own node name, ports, data and (empty) plugins.

    It shares the machine's epmd, as any second node does, under a name no other node has.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.node = f"chaos-{secrets.token_hex(4)}@localhost"
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq-env.conf").write_text("")  # not the machine's node settings
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env |= {
            # The Erlang cookie goes here, not into the invoking user's home.
            "HOME": str(directory),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.group = Group(
            "rabbitmq", [str(RABBITMQ_SERVER)], directory.parent / "rabbitmq.log", env=env
        )

    @property
    def url(self) -> str:
        """The AMQP URL medcloud connects with."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        """Start the node on its data (durable queues and persistent messages come back)."""
        self.group.start()
        _wait_for(lambda: _port_open(self.port), self.group, "listening")


class Mosquitto:
    """A Mosquitto of the run's own, with dynamic security and persistence.

    The broker of tests/support/mosquitto.py (configured like deploy/mosquitto/), started in a
    process group of its own so that it can be crashed like the others.
    """

    def __init__(self, directory: Path) -> None:
        from tests.support.mosquitto import ADMIN, prepare, tools

        found = tools()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.admin = ADMIN
        self.admin_password = secrets.token_urlsafe(16)
        self.worker_password = secrets.token_urlsafe(16)
        prepare(found, directory, self.port, self.admin_password, persistence=True)
        self.group = Group(
            "mosquitto",
            [found.mosquitto, "-c", str(directory / "mosquitto.conf")],
            directory / "stdout.log",
        )

    @property
    def worker_url(self) -> str:
        """The URL the ingest workers connect with."""
        from tests.support.mosquitto import WORKER

        return f"mqtt://{WORKER}:{self.worker_password}@127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker (again) and wait until it takes connections."""
        self.group.start()
        _wait_for(lambda: _port_open(self.port), self.group, "listening")


@contextlib.contextmanager
def own_groups(groups: Callable[[], Sequence[Group]]) -> Iterator[None]:
    """Stop every group `groups()` names when the block ends, however it ends."""
    try:
        yield
    finally:
        for group in reversed(groups()):
            with contextlib.suppress(Exception):
                group.stop()


def leftovers(groups: Sequence[Group]) -> list[int]:
    """Pids of these groups still alive."""
    return sorted(pid for group in groups for pid in group.leftovers())
