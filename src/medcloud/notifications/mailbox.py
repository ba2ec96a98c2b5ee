"""A real SMTP server on the running event loop that keeps what it receives: for the demo, the
tests and the benchmark.

Messages are kept in memory and, when given a directory, in a Maildir a person can open with a
mail client (`mutt -f <dir>`). It can be told to refuse mail, to test how senders fail.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import mailbox
import os
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Literal

from aiosmtpd.smtp import SMTP, Envelope, Session

from medcloud.platform.datadir import PRIVATE_FILE


@dataclass(frozen=True)
class Received:
    """One message the mailbox accepted."""

    message_id: str | None
    idempotency_key: str | None
    """The `X-Medcloud-Idempotency-Key` header, if the sender set one."""
    to: tuple[str, ...]
    """The envelope recipients."""
    subject: str
    received_at: float
    """Unix time of acceptance."""
    raw: bytes


class LocalMailbox:
    """An SMTP server on 127.0.0.1 (by default) that accepts every message, or refuses on demand.

    Set `refuse_with` to an SMTP reply such as `451 4.3.0 try again later` to answer it to every
    RCPT or DATA command (as `refuse_at` says) until it is set back to None.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        directory: Path | None = None,
        *,
        on_message: Callable[[Received], None] | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_tls: bool = False,
    ) -> None:
        """Prepare the server; nothing listens before `start`. With `tls_context` it offers
        STARTTLS, and with `require_tls` too it refuses mail before STARTTLS."""
        if require_tls and tls_context is None:
            raise ValueError("requiring TLS needs a tls_context")
        self.host = host
        self.port = port
        self.directory = directory
        self.on_message = on_message
        self.refuse_with: str | None = None
        self.refuse_at: Literal["rcpt", "data"] = "data"
        self.messages: list[Received] = []
        self.connections = 0
        """SMTP connections accepted so far (a sender that pools them opens few)."""
        self._require_tls = require_tls
        self._tls_context = tls_context
        self._server: asyncio.Server | None = None
        # Weak: a long-running demo mailbox must not keep every finished session alive.
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._maildir: mailbox.Maildir | None = None
        self._arrived = asyncio.Condition()

    async def start(self) -> None:
        """Listen on the running loop; `port` is the real port afterwards."""
        if self._server is not None:
            raise RuntimeError("the mailbox is already running")
        if self.directory is not None:
            self._maildir = mailbox.Maildir(self.directory, create=True)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        def session() -> SMTP:
            protocol = SMTP(
                handler,
                hostname="medcloud-mailbox",
                ident="medcloud local mailbox",
                tls_context=self._tls_context,
                require_starttls=self._require_tls,
                loop=loop,
            )
            self.connections += 1
            self._sessions.add(protocol)
            return protocol

        self._server = await loop.create_server(session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop the open sessions."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Before Python 3.12 closing the server leaves its connections open.
        for protocol in list(self._sessions):
            if protocol.transport is not None:
                protocol.transport.close()
        self._sessions.clear()
        await server.wait_closed()
        if self._maildir is not None:
            self._maildir.close()
            self._maildir = None

    async def wait_for(self, count: int, timeout: float) -> None:
        """Return once `count` messages arrived in all; raise TimeoutError after `timeout` s."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)

    async def _accept(self, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        headers = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            raw, headersonly=True
        )
        received = Received(
            message_id=_header(headers, "Message-ID"),
            idempotency_key=_header(headers, "X-Medcloud-Idempotency-Key"),
            to=tuple(envelope.rcpt_tos),
            subject=_header(headers, "Subject") or "",
            received_at=time.time(),
            raw=raw,
        )
        if self._maildir is not None and self.directory is not None:
            key = self._maildir.add(raw)
            # The mailbox module makes messages 0666 less the umask; they hold alarm details and
            # acknowledge links, kept private like the rest of the data directory. Messages
            # without Maildir info are delivered to new/ under their key.
            os.chmod(self.directory / "new" / key, PRIVATE_FILE)
        async with self._arrived:
            self.messages.append(received)
            self._arrived.notify_all()
        if self.on_message is not None:
            self.on_message(received)


def _header(headers: Message, name: str) -> str | None:
    value = headers.get(name)
    return str(value).strip() if value is not None else None


class _Handler:
    """aiosmtpd's hooks: refuse when told to, keep what is accepted."""

    def __init__(self, owner: LocalMailbox) -> None:
        self._mailbox = owner

    async def handle_RCPT(  # noqa: N802  (the name aiosmtpd calls)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Refuse the recipient if told to, else add it to the envelope."""
        del server, session, rcpt_options
        if self._mailbox.refuse_with and self._mailbox.refuse_at == "rcpt":
            return self._mailbox.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802  (the name aiosmtpd calls)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Refuse the message if told to, else keep it."""
        del server, session
        if self._mailbox.refuse_with and self._mailbox.refuse_at == "data":
            return self._mailbox.refuse_with
        await self._mailbox._accept(envelope)
        return "250 Message accepted for delivery"
