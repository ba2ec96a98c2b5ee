"""Run medcloud commands as real processes, and stop only those."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medcloud.config import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a child process the same settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEDCLOUD_")}
    env |= {
        "MEDCLOUD_VAR_DIR": str(settings.var_dir),
        "MEDCLOUD_DATABASE_URL": settings.database_url,
        "MEDCLOUD_BUS_URL": settings.bus_url,
        "MEDCLOUD_REDIS_URL": settings.redis_url,
        "MEDCLOUD_REDIS_PREFIX": settings.redis_prefix,
        "MEDCLOUD_BUS__EXCHANGE": settings.bus.exchange,
        "MEDCLOUD_BUS__QUEUE_PREFIX": settings.bus.queue_prefix,
        "MEDCLOUD_BUS__RETRY_BACKOFF_SECONDS": str(settings.bus.retry_backoff_seconds),
        "MEDCLOUD_BUS__RELAY_POLL_SECONDS": str(settings.bus.relay_poll_seconds),
        "MEDCLOUD_LOG_LEVEL": "WARNING",
        # The same limits as the in-process app (relaxed for tests that are not about them).
        "MEDCLOUD_RATE_LIMITS__DEFAULT": settings.rate_limits.default,
        "MEDCLOUD_RATE_LIMITS__INGEST": settings.rate_limits.ingest,
        "MEDCLOUD_RATE_LIMITS__ANONYMOUS": settings.rate_limits.anonymous,
    }
    return env | extra


@contextmanager
def medcloud(*args: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start `medcloud ARGS…`; kill it (by pid, only it) when the block ends."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "medcloud.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
