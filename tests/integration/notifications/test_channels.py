"""The channels over their real protocols on 127.0.0.1: SMTP to the local mailbox, a Twilio-like
REST API and a webhook receiver that verifies with the snippet published in docs/webhooks.md."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.parser
import email.policy
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import ssl
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medcloud.notifications.channels import (
    EmailChannel,
    Message,
    Outcome,
    SmsChannel,
    WebhookChannel,
    message_id_for,
    parse_status_callback,
)
from medcloud.notifications.mailbox import LocalMailbox
from medcloud.notifications.signing import sign_webhook, verify_twilio_signature, verify_webhook
from tests.support.receivers import (
    Answer,
    HttpReceiver,
    Request,
    Start,
    hang,
    json_answer,
    receivers,
)

SENDER = "medcloud@stmary.example"
BOB = "bob.clinician@stmary.example"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def email_to_bob(key: str = "alert-1:0:bob:email", *, html: bool = True) -> Message:
    return Message(
        idempotency_key=key,
        to=BOB,
        subject="[HIGH] Alarm – ward 3B, bed 12",
        text="A new alarm needs your attention.\n",
        html="<p>A new alarm needs your attention.</p>" if html else None,
    )


def parse(raw: bytes) -> EmailMessage:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


# -- Email ------------------------------------------------------------------------------------


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[LocalMailbox]:
    box = LocalMailbox(directory=tmp_path / "maildir")
    await box.start()
    yield box
    await box.stop()


@pytest.fixture
async def email_channel(mailbox: LocalMailbox) -> AsyncIterator[EmailChannel]:
    channel = EmailChannel("127.0.0.1", mailbox.port, sender=SENDER, timeout=5.0)
    yield channel
    await channel.close()


async def test_an_email_arrives_with_a_message_id_from_its_key(
    mailbox: LocalMailbox, email_channel: EmailChannel, tmp_path: Path
) -> None:
    outcome = await email_channel.send(email_to_bob())
    await mailbox.wait_for(1, timeout=5)

    assert outcome == Outcome("sent", provider_id=message_id_for("alert-1:0:bob:email"))
    assert re.fullmatch(r"<[0-9a-f]{32}@medcloud>", outcome.provider_id or "")
    [received] = mailbox.messages
    assert received.message_id == outcome.provider_id
    assert received.idempotency_key == "alert-1:0:bob:email"
    assert received.to == (BOB,)
    assert received.subject == "[HIGH] Alarm – ward 3B, bed 12"
    mail = parse(received.raw)
    assert (mail["From"], mail["To"]) == (SENDER, BOB)
    assert mail["Date"] is not None
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "A new alarm needs your attention."
    assert html is not None and "<p>A new alarm" in html.get_content()
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == 1  # readable with a mail client


async def test_an_email_without_html_is_plain_text(
    mailbox: LocalMailbox, email_channel: EmailChannel
) -> None:
    await email_channel.send(email_to_bob(html=False))
    await mailbox.wait_for(1, timeout=5)
    assert parse(mailbox.messages[0].raw).get_content_type() == "text/plain"


async def test_a_resent_email_keeps_its_message_id_so_duplicates_show(
    mailbox: LocalMailbox, email_channel: EmailChannel
) -> None:
    first = await email_channel.send(email_to_bob("alert-1:0:bob:email"))
    again = await email_channel.send(email_to_bob("alert-1:0:bob:email"))
    other = await email_channel.send(email_to_bob("alert-1:1:bob:email"))
    await mailbox.wait_for(3, timeout=5)
    ids = [received.message_id for received in mailbox.messages]
    assert ids == [first.provider_id, again.provider_id, other.provider_id]
    assert ids[0] == ids[1] != ids[2]


async def test_fifty_concurrent_emails_arrive_once_each_over_a_few_connections(
    mailbox: LocalMailbox,
) -> None:
    channel = EmailChannel("127.0.0.1", mailbox.port, sender=SENDER, connections=4)
    keys = [f"alert-{n}:0:bob:email" for n in range(50)]
    try:
        outcomes = await asyncio.gather(*(channel.send(email_to_bob(key)) for key in keys))
        await mailbox.wait_for(50, timeout=5)
    finally:
        await channel.close()
    assert {outcome.status for outcome in outcomes} == {"sent"}
    assert Counter(received.idempotency_key for received in mailbox.messages) == Counter(keys)
    assert mailbox.connections <= 4


@pytest.mark.parametrize("refuse_at", ["rcpt", "data"])
@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 try again later", True), ("550 5.1.1 no such mailbox", False)],
)
async def test_a_refusal_fails_transiently_on_4xx_and_permanently_on_5xx(
    mailbox: LocalMailbox,
    email_channel: EmailChannel,
    refuse_at: str,
    reply: str,
    retryable: bool,
) -> None:
    mailbox.refuse_with, mailbox.refuse_at = reply, refuse_at  # type: ignore[assignment]
    outcome = await email_channel.send(email_to_bob())
    assert outcome.status == "failed"
    assert outcome.retryable is retryable
    assert outcome.reason == reply

    mailbox.refuse_with = None  # the refusal left the pooled connection usable
    assert (await email_channel.send(email_to_bob())).status == "sent"
    assert mailbox.connections == 1
    assert len(mailbox.messages) == 1


async def test_a_closed_port_is_a_retryable_failure() -> None:
    channel = EmailChannel("127.0.0.1", free_port(), sender=SENDER, timeout=2.0)
    outcome = await channel.send(email_to_bob())
    await channel.close()
    assert outcome.status == "failed" and outcome.retryable
    assert outcome.reason and "127.0.0.1" in outcome.reason


async def test_a_silent_server_is_a_retryable_timeout() -> None:
    release = asyncio.Event()

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = EmailChannel("127.0.0.1", port, sender=SENDER, timeout=0.2)
    try:
        outcome = await channel.send(email_to_bob())
    finally:
        release.set()
        await channel.close()
        server.close()
        await server.wait_closed()
    assert outcome.status == "failed" and outcome.retryable
    assert "Timeout" in (outcome.reason or "")


async def test_a_dropped_pooled_connection_is_reopened_once(tmp_path: Path) -> None:
    first = LocalMailbox()
    await first.start()
    channel = EmailChannel("127.0.0.1", first.port, sender=SENDER)
    try:
        assert (await channel.send(email_to_bob("k1"))).status == "sent"
        await first.stop()  # the server goes away under the idle pooled connection
        second = LocalMailbox(port=first.port)
        await second.start()
        try:
            assert (await channel.send(email_to_bob("k2"))).status == "sent"
            assert [received.idempotency_key for received in second.messages] == ["k2"]
        finally:
            await second.stop()
    finally:
        await channel.close()


async def test_a_bad_address_is_a_permanent_failure(email_channel: EmailChannel) -> None:
    for to in ("not an address", "bob@stmary.example, mallory@evil.example", ""):
        outcome = await email_channel.send(Message("k", to, "s", "t"))
        assert outcome.status == "failed" and not outcome.retryable, to
    header_injection = Message("k", BOB, "Alarm\r\nBcc: mallory@evil.example", "t")
    outcome = await email_channel.send(header_injection)
    assert outcome.status == "failed" and not outcome.retryable


async def test_a_closed_channel_sends_nothing(
    mailbox: LocalMailbox, email_channel: EmailChannel
) -> None:
    await email_channel.send(email_to_bob())
    await email_channel.close()
    outcome = await email_channel.send(email_to_bob())
    assert outcome.status == "failed" and not outcome.retryable
    assert len(mailbox.messages) == 1


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1, the server's context, and a client trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "medcloud test mailbox")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return Tls(server=server, client=client)


async def test_starttls_carries_the_email_when_the_server_requires_it(tls: Tls) -> None:
    box = LocalMailbox(tls_context=tls.server, require_tls=True)
    await box.start()
    secure = EmailChannel(
        "127.0.0.1", box.port, security="starttls", sender=SENDER, tls_context=tls.client
    )
    plain = EmailChannel("127.0.0.1", box.port, sender=SENDER)
    untrusting = EmailChannel("127.0.0.1", box.port, security="starttls", sender=SENDER)
    try:
        assert (await secure.send(email_to_bob("over-tls"))).status == "sent"
        refused = await plain.send(email_to_bob("in-clear"))
        unverified = await untrusting.send(email_to_bob("unknown-ca"))
    finally:
        for channel in (secure, plain, untrusting):
            await channel.close()
        await box.stop()
    assert [received.idempotency_key for received in box.messages] == ["over-tls"]
    assert refused.status == "failed" and (refused.reason or "").startswith("530")
    assert unverified.status == "failed" and "CERTIFICATE_VERIFY_FAILED" in (
        unverified.reason or ""
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Start]:
    """Start HTTP receivers on free ports; stop them all after the test."""
    async with receivers() as start:
        yield start


# -- SMS --------------------------------------------------------------------------------------

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "sms-auth-token"
CALLBACK = "https://medcloud.example/api/v1/notifications/sms/status"


def sms_to_bob(key: str = "alert-1:0:bob:sms") -> Message:
    return Message(key, "+447700900123", "unused", "[HIGH] Alarm - ward 3B, bed 12. Open: x")


def twilio_like(status: str = "queued", **extra: object) -> Callable[[Request], Awaitable[Answer]]:
    """A provider that checks basic auth and queues the message."""

    async def respond(request: Request) -> Answer:
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if request.header("Authorization") != expected:
            document: object = {"code": 20003, "message": "Authenticate", "status": 401}
            return 401, {}, json.dumps(document).encode()
        document = {"sid": "SM" + "0" * 32, "status": status, **extra}
        return 201, {"Content-Type": "application/json"}, json.dumps(document).encode()

    return respond


def sms_channel(server: HttpReceiver, *, token: str = TOKEN, timeout: float = 5.0) -> SmsChannel:
    return SmsChannel(
        server.url + "/2010-04-01/",
        SID,
        token,
        "+15005550006",
        status_callback=CALLBACK,
        timeout=timeout,
    )


async def test_an_sms_is_posted_as_a_form_with_basic_auth_and_an_idempotency_key(
    receiver: Start,
) -> None:
    server = await receiver(twilio_like())
    channel = sms_channel(server)
    outcome = await channel.send(sms_to_bob())
    await channel.close()

    assert outcome == Outcome("sent", provider_id="SM" + "0" * 32)
    [request] = server.requests
    assert (request.method, request.target) == (
        "POST",
        f"/2010-04-01/Accounts/{SID}/Messages.json",
    )
    assert request.header("Idempotency-Key") == "alert-1:0:bob:sms"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert dict(urllib.parse.parse_qsl(request.body.decode())) == {
        "To": "+447700900123",
        "From": "+15005550006",
        "Body": "[HIGH] Alarm - ward 3B, bed 12. Open: x",
        "StatusCallback": CALLBACK,
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("accepted", "sent"),
        ("queued", "sent"),
        ("sending", "sent"),
        ("sent", "sent"),
        ("delivered", "delivered"),
    ],
)
async def test_the_providers_status_maps_to_the_outcome(
    receiver: Start, status: str, expected: str
) -> None:
    channel = sms_channel(await receiver(twilio_like(status)))
    outcome = await channel.send(sms_to_bob())
    await channel.close()
    assert (outcome.status, outcome.provider_id) == (expected, "SM" + "0" * 32)


async def test_a_message_the_provider_reports_failed_is_a_permanent_failure(
    receiver: Start,
) -> None:
    respond = twilio_like("failed", error_code=30003, error_message="Unreachable destination")
    channel = sms_channel(await receiver(respond))
    outcome = await channel.send(sms_to_bob())
    await channel.close()
    assert outcome == Outcome(
        "failed",
        provider_id="SM" + "0" * 32,
        reason="30003: Unreachable destination",
        retryable=False,
    )


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (408, True), (400, False)]
)
async def test_http_errors_map_to_retryable_or_permanent_failures(
    receiver: Start, status: int, retryable: bool
) -> None:
    document = {"code": 21211, "message": "Invalid 'To' Phone Number", "status": status}
    channel = sms_channel(await receiver(json_answer(status, document)))
    outcome = await channel.send(sms_to_bob())
    await channel.close()
    assert outcome.status == "failed" and outcome.retryable is retryable
    assert outcome.reason == f"HTTP {status} 21211: Invalid 'To' Phone Number"


async def test_a_wrong_auth_token_is_a_permanent_failure_without_the_token_in_the_reason(
    receiver: Start,
) -> None:
    channel = sms_channel(await receiver(twilio_like()), token="wrong-token")
    outcome = await channel.send(sms_to_bob())
    await channel.close()
    assert outcome.status == "failed" and not outcome.retryable
    assert outcome.reason == "HTTP 401 20003: Authenticate"


async def test_a_provider_that_does_not_answer_is_a_retryable_timeout(receiver: Start) -> None:
    channel = sms_channel(await receiver(hang), timeout=0.2)
    outcome = await channel.send(sms_to_bob())
    await channel.close()
    assert outcome == Outcome("failed", reason="timed out", retryable=True)


async def test_an_unreachable_provider_is_a_retryable_failure() -> None:
    channel = SmsChannel(f"http://127.0.0.1:{free_port()}", SID, TOKEN, "+15005550006")
    outcome = await channel.send(sms_to_bob())
    await channel.close()
    assert outcome.status == "failed" and outcome.retryable


async def test_an_answer_without_a_sid_is_a_retryable_failure(receiver: Start) -> None:
    channel = sms_channel(await receiver(json_answer(201, {"status": "queued"})))
    outcome = await channel.send(sms_to_bob())
    await channel.close()
    assert outcome.status == "failed" and outcome.retryable


def test_a_status_callback_maps_to_sid_status_and_reason() -> None:
    base = {"MessageSid": "SM1", "AccountSid": SID}
    assert parse_status_callback({**base, "MessageStatus": "sent"}) == ("SM1", "sent", None)
    assert parse_status_callback({**base, "MessageStatus": "delivered"}) == (
        "SM1",
        "delivered",
        None,
    )
    undelivered = {**base, "MessageStatus": "undelivered", "ErrorCode": "30005"}
    assert parse_status_callback(undelivered) == ("SM1", "failed", "30005")
    failed = {**base, "MessageStatus": "failed", "ErrorMessage": "Unknown destination"}
    assert parse_status_callback(failed) == ("SM1", "failed", "Unknown destination")
    assert parse_status_callback({**base, "MessageStatus": "failed"}) == (
        "SM1",
        "failed",
        "status failed",
    )
    with pytest.raises(ValueError, match="MessageSid"):
        parse_status_callback({"MessageStatus": "delivered"})


def test_a_status_callback_is_authenticated_with_the_providers_signature() -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": SID}
    signed = CALLBACK + "".join(name + form[name] for name in sorted(form))
    signature = base64.b64encode(
        hmac.new(TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()
    assert verify_twilio_signature(TOKEN, CALLBACK, form, signature)
    assert not verify_twilio_signature(TOKEN, CALLBACK, {**form, "MessageStatus": "x"}, signature)


# -- Webhooks ---------------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec-stmary"
PAYLOAD = {
    "type": "alert.raised",
    "alert": {"id": "alert-1", "priority": "high", "ward": "3B", "bed": "12"},
    "link": "https://medcloud.example/alerts/alert-1",
}
Verify = Callable[..., bool]


@pytest.fixture(scope="module")
def documented_verify() -> Verify:
    """The `verify` function exactly as docs/webhooks.md publishes it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/webhooks.md has one python block: the verification snippet"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    verify = namespace["verify"]
    assert callable(verify)
    return verify


def verifying(
    verify: Verify, status: int = 200, *, secret: str = WEBHOOK_SECRET
) -> Callable[[Request], Awaitable[Answer]]:
    """A receiver as the docs tell one to be: 401 unless the documented check passes."""

    async def respond(request: Request) -> Answer:
        if not verify(secret, request.body, request.headers):
            return 401, {}, b""
        return status, {"Content-Type": "application/json"}, b'{"id": "rcpt-1"}'

    return respond


def webhook(url: str, *, secret: str | None = WEBHOOK_SECRET) -> Message:
    return Message(
        "alert-1:0:webhook:endpoint-1", url, "unused", "unused", payload=PAYLOAD, secret=secret
    )


async def test_a_webhook_is_delivered_signed_as_documented(
    receiver: Start, documented_verify: Verify
) -> None:
    server = await receiver(verifying(documented_verify))
    channel = WebhookChannel()
    outcome = await channel.send(webhook(server.url + "/hooks/medcloud"))
    await channel.close()

    assert outcome == Outcome("delivered", provider_id="rcpt-1")
    [request] = server.requests
    assert (request.method, request.target) == ("POST", "/hooks/medcloud")
    assert request.body == orjson.dumps(PAYLOAD)
    assert request.header("Content-Type") == "application/json"
    assert request.header("Medcloud-Webhook-Id") == "alert-1:0:webhook:endpoint-1"
    timestamp, signature = (
        request.header("Medcloud-Webhook-Timestamp"),
        request.header("Medcloud-Webhook-Signature"),
    )
    assert timestamp is not None and signature is not None
    assert abs(int(timestamp) - time.time()) < 60
    assert verify_webhook(WEBHOOK_SECRET, request.body, timestamp, signature, now=time.time())


async def test_a_receiver_with_another_secret_refuses_it_for_good(
    receiver: Start, documented_verify: Verify
) -> None:
    server = await receiver(verifying(documented_verify, secret="another-secret"))
    channel = WebhookChannel()
    outcome = await channel.send(webhook(server.url))
    await channel.close()
    assert outcome == Outcome("failed", reason="HTTP 401", retryable=False)


async def test_a_webhook_signed_too_long_ago_is_refused_by_the_documented_check(
    receiver: Start, documented_verify: Verify
) -> None:
    server = await receiver(verifying(documented_verify))
    channel = WebhookChannel(clock=lambda: time.time() - 301)
    outcome = await channel.send(webhook(server.url))
    await channel.close()
    assert outcome.status == "failed" and outcome.reason == "HTTP 401"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (429, True), (410, False), (404, False), (302, False)],
)
async def test_a_receivers_error_is_retryable_or_permanent(
    receiver: Start, documented_verify: Verify, status: int, retryable: bool
) -> None:
    server = await receiver(verifying(documented_verify, status))
    channel = WebhookChannel()
    outcome = await channel.send(webhook(server.url))
    await channel.close()
    assert outcome.status == "failed" and outcome.retryable is retryable
    assert outcome.reason == f"HTTP {status}"


async def test_a_receiver_that_does_not_answer_is_a_retryable_timeout(receiver: Start) -> None:
    channel = WebhookChannel(timeout=0.2)
    outcome = await channel.send(webhook((await receiver(hang)).url))
    await channel.close()
    assert outcome == Outcome("failed", reason="timed out", retryable=True)


async def test_an_unreachable_receiver_is_a_retryable_failure() -> None:
    channel = WebhookChannel()
    outcome = await channel.send(webhook(f"http://127.0.0.1:{free_port()}/hook"))
    await channel.close()
    assert outcome.status == "failed" and outcome.retryable


async def test_a_webhook_without_a_secret_is_never_sent(receiver: Start) -> None:
    server = await receiver(json_answer(200, {}))
    channel = WebhookChannel()
    outcome = await channel.send(webhook(server.url, secret=None))
    await channel.close()
    assert outcome.status == "failed" and not outcome.retryable
    assert server.requests == []


def test_the_documented_check_accepts_any_rotated_signature_and_any_header_case(
    documented_verify: Verify,
) -> None:
    body, now = orjson.dumps(PAYLOAD), time.time()
    old, new = sign_webhook("old", body, int(now)), sign_webhook(WEBHOOK_SECRET, body, int(now))
    headers: Mapping[str, str] = {
        "medcloud-webhook-timestamp": str(int(now)),
        "MEDCLOUD-WEBHOOK-SIGNATURE": f"{old} {new}",
    }
    assert documented_verify(WEBHOOK_SECRET, body, headers, now=now)
    assert documented_verify("old", body, headers, now=now)
    assert not documented_verify("third", body, headers, now=now)
    assert not documented_verify(WEBHOOK_SECRET, body + b" ", headers, now=now)
    assert not documented_verify(WEBHOOK_SECRET, body, headers, now=now + 301)
    assert not documented_verify(WEBHOOK_SECRET, body, {}, now=now)
