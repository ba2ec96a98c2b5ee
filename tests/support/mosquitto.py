"""A Mosquitto broker of the test's own, and devices that speak MQTT to it.

Each broker runs from a temporary directory on a free port, with the dynamic-security plugin
initialised by `mosquitto_ctrl dynsec init`; only its own pid is ever stopped. The shared broker
on port 1883 is never touched. Under CI (`MEDCLOUD_TEST_SERVICES=1` or `CI` set) a missing
Mosquitto fails the test; elsewhere the test is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from medcloud.config import MqttSettings
from medcloud.platform.mqtt import ack_topic, properties, telemetry_topic
from tests.support.processes import free_port

CI = os.environ.get("MEDCLOUD_TEST_SERVICES") == "1" or bool(os.environ.get("CI"))
PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
ADMIN = "medcloud-admin"
WORKER = "medcloud-ingest"


@dataclass(frozen=True)
class Tools:
    """Where Mosquitto, its control tool and its dynamic-security plugin are."""

    mosquitto: str
    ctrl: str
    plugin: str


def tools() -> Tools:
    """Find Mosquitto; fail loudly under CI, skip elsewhere, when any part is missing."""
    mosquitto = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    ctrl = shutil.which("mosquitto_ctrl")
    plugin = os.environ.get("MEDCLOUD_TEST_DYNSEC_PLUGIN") or next(
        (path for path in PLUGIN_PATHS if Path(path).exists()), None
    )
    missing = [
        name
        for name, found in (
            ("the mosquitto binary", mosquitto),
            ("mosquitto_ctrl", ctrl),
            ("the dynamic-security plugin (MEDCLOUD_TEST_DYNSEC_PLUGIN)", plugin),
        )
        if not found
    ]
    if missing:
        reason = "Mosquitto 2 is needed for the MQTT tests; missing " + ", ".join(missing)
        if CI:
            pytest.fail(reason + " (required under CI)", pytrace=False)
        pytest.skip(reason)
    assert mosquitto and ctrl and plugin
    return Tools(mosquitto, ctrl, plugin)


@dataclass
class Broker:
    """A running Mosquitto with dynamic security: its port, admin and the workers' password."""

    tools: Tools
    directory: Path
    port: int
    admin_password: str
    worker_password: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def worker_url(self) -> str:
        """The URL the ingest workers connect with."""
        return f"mqtt://{WORKER}:{self.worker_password}@127.0.0.1:{self.port}"

    def settings(self, **overrides: Any) -> MqttSettings:
        """MQTT settings for medcloud: this broker, its admin, quick reconnects."""
        values: dict[str, Any] = {
            "url": self.worker_url,
            "admin_username": ADMIN,
            "admin_password": self.admin_password,
            "reconnect_max_seconds": 1.0,
            "retry_seconds": 0.05,
            "receive_maximum": 500,
        }
        return MqttSettings.model_validate(values | overrides)

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start(self) -> None:
        """Start the broker (again) and wait until it takes connections."""
        out = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [self.tools.mosquitto, "-c", str(self.directory / "mosquitto.conf")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mosquitto exited at start:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"mosquitto never listened on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        """Stop this broker (its own pid only) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def prepare(
    found: Tools, directory: Path, port: int, admin_password: str, *, persistence: bool
) -> None:
    """Make a broker's dynamic-security file (its admin, `ADMIN`) and configuration."""
    subprocess.run(
        [
            found.ctrl,
            "dynsec",
            "init",
            str(directory / "dynamic-security.json"),
            ADMIN,
            admin_password,
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    write_config(directory, port, found.plugin, persistence=persistence)


def write_config(directory: Path, port: int, plugin: str, *, persistence: bool) -> None:
    """Write a broker configuration like deploy/mosquitto/mosquitto.conf, for one test."""
    lines = [
        "per_listener_settings false",
        # Running as root, Mosquitto would switch to the `mosquitto` user, who cannot write here.
        f"user {getpass.getuser()}",
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {directory / 'dynamic-security.json'}",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {directory}/",
        "max_inflight_messages 1000",
        # Large rather than 0 ("no limit"), which some 2.0.x releases mishandle (deploy/mosquitto).
        "max_queued_messages 1000000",
        "set_tcp_nodelay true",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
    ]
    (directory / "mosquitto.conf").write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def running_broker(directory: Path, *, persistence: bool = False) -> Iterator[Broker]:
    """Start a Mosquitto of our own in `directory`; stop it (only it) when the block ends."""
    found = tools()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    broker = Broker(
        tools=found,
        directory=directory,
        port=port,
        admin_password=secrets.token_urlsafe(16),
        worker_password=secrets.token_urlsafe(16),
    )
    prepare(found, directory, port, broker.admin_password, persistence=persistence)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class MqttDevice:
    """A device speaking MQTT v5: publishes readings, hears the platform's acknowledgements."""

    device_id: str
    client: aiomqtt.Client
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    heard: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(
        self,
        body: Any,
        *,
        msg_id: str | None = None,
        topic: str | None = None,
        qos: int = 1,
    ) -> None:
        """Publish a reading (or any payload); `msg_id` goes out as MQTT v5 correlation data."""
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        publish = properties("PUBLISH")
        if msg_id is not None:
            publish.CorrelationData = msg_id.encode()
        await self.client.publish(
            topic or telemetry_topic(self.device_id), payload, qos=qos, properties=publish
        )

    async def ack(self, msg_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for the platform's acknowledgement of `msg_id`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while msg_id not in self.acks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no acknowledgement of {msg_id}; heard {list(self.acks)}")
            self.heard.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.heard.wait(), remaining)
        return self.acks[msg_id]

    async def _listen(self) -> None:
        async for message in self.client.messages:
            body: dict[str, Any] = orjson.loads(message.payload)
            correlation = getattr(message.properties, "CorrelationData", None)
            key = correlation.decode() if correlation else str(body.get("msg_id"))
            self.acks[key] = body
            self.heard.set()


@contextlib.asynccontextmanager
async def mqtt_device(
    broker: Broker, device_id: str, token: str, *, client_id: str | None = None
) -> AsyncIterator[MqttDevice]:
    """Connect as a registered device (username: its id, password: its token), hear its acks."""
    client = aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=device_id,
        password=token,
        identifier=client_id or f"device-{device_id}",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=1000,
    )
    async with client:
        device = MqttDevice(device_id, client)
        await client.subscribe(ack_topic(device_id), qos=1)
        listener = asyncio.create_task(device._listen())
        try:
            yield device
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await listener
