"""The MLLP listener as transport: frames in, answers out, and every bound a sender could push
against holding, over real sockets (plain and TLS) with a conversation that only echoes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medcloud.interop.mllp import END, START, MllpServer, Peer, tls_context
from tests.support.mllp import connected


class Echo:
    """Answers each message with its own bytes reversed; too large ones with TOO LARGE."""

    def __init__(self) -> None:
        self.peers: list[Peer] = []

    def converse(self, peer: Peer) -> Echo:
        self.peers.append(peer)
        return self

    async def answer(self, message: bytes) -> bytes:
        return message[::-1]

    def too_large(self, beginning: bytes) -> bytes:
        return b"TOO LARGE " + beginning[:3]


@contextlib.asynccontextmanager
async def listener(
    *, tls: ssl.SSLContext | None = None, connections: int = 8, timeout: float = 5.0
) -> AsyncIterator[tuple[MllpServer, Echo]]:
    echo = Echo()
    server = MllpServer(
        echo.converse,
        max_message_bytes=1024,
        read_timeout_seconds=timeout,
        idle_timeout_seconds=timeout,
        max_connections=connections,
        tls=tls,
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server, echo
    finally:
        await server.close()


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    framed = await asyncio.wait_for(reader.readuntil(END), 5)
    return framed[framed.index(START) + 1 : -len(END)]


async def test_frames_are_answered_in_turn_and_noise_before_a_frame_is_skipped() -> None:
    async with listener() as (server, echo), connected(server.port) as sender:
        await sender.send_raw(b"\r\n garbage \x00" + START + b"ABC" + END + START + b"XYZ" + END)
        first, second = await sender.answer(), await sender.answer()

    assert (first, second) == ("CBA", "ZYX")
    assert echo.peers[0].address == "127.0.0.1"


async def test_a_frame_restarted_before_its_end_counts_from_its_last_start() -> None:
    async with listener() as (server, _), connected(server.port) as sender:
        await sender.send_raw(START + b"half a mess" + START + b"WHOLE" + END)
        assert await sender.answer() == "ELOHW"


async def test_an_oversized_frame_is_refused_and_the_listener_serves_the_next_sender() -> None:
    async with listener() as (server, _):
        async with connected(server.port) as sender:
            await sender.send_raw(START + b"MSH" + b"x" * 5000 + END)
            assert (await sender.answer()).startswith("TOO LARGE MSH")
        async with connected(server.port) as sender:
            assert await sender.send("fine") == "enif"


async def test_a_sender_silent_within_a_frame_is_disconnected_and_others_are_served() -> None:
    async with listener(timeout=0.3) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(START + b"never finished")
        await writer.drain()
        async with connected(server.port) as other:
            assert await other.send("meanwhile") == "elihwnaem"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the listener
        writer.close()


async def test_connections_beyond_the_limit_are_closed_at_once() -> None:
    async with listener(connections=1) as (server, _), connected(server.port) as first:
        assert await first.send("one") == "eno"
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert await first.send("still") == "llits"


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "mllp.pem", directory / "mllp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_over_tls_a_trusting_sender_is_answered_and_a_plain_one_is_not(
    tmp_path: Path,
) -> None:
    cert, key = certificate(tmp_path)
    tls = tls_context(str(cert), str(key))
    trusting = ssl.create_default_context(cafile=str(cert))

    async with listener(tls=tls) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=trusting)
        writer.write(START + b"secret" + END)
        await writer.drain()
        assert await read_answer(reader) == b"terces"
        writer.close()

        plain_reader, plain_writer = await asyncio.open_connection("127.0.0.1", server.port)
        plain_writer.write(START + b"secret" + END)
        await plain_writer.drain()
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError, TimeoutError)):
            await read_answer(plain_reader)
        plain_writer.close()
