"""OWASP API10 (unsafe consumption of APIs): what other systems send medcloud is untrusted —
HL7 v2 from monitor gateways, FHIR searches from EHRs, an SMS provider's delivery reports, a
webhook receiver's answers — and none of it can crash, hang or mislead the server.

The HL7 conformance set and the listener's own bounds (frames, silence, connections) are
tested in tests/unit/interop/ and tests/integration/interop/test_mllp*.py; a consumed JWKS
yields only Ed25519 keys (tests/integration/identity/test_owasp_api_top10.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import pytest
from pydantic import SecretStr

from medcloud.config import NotificationSettings
from medcloud.notifications.channels import MAX_REASON_CHARS, Message, WebhookChannel
from tests.integration.interop.conftest import deployed, listening_on, oru
from tests.security.conftest import Deployment, own_settings
from tests.support.client import now, running
from tests.support.mllp import END, START, connected, segments
from tests.support.receivers import Request, hang, receivers

pytestmark = pytest.mark.asyncio(loop_scope="package")


def mutations(message: str) -> dict[str, bytes]:
    """A valid message broken in the ways senders and attackers break them, by name."""
    msh, *rest = message.split("\r")
    body = "\r".join(rest)
    text = {
        "only the header": msh,
        "cut mid-header": msh[:20],
        "no header": body,
        "a header without encoding characters": "MSH|" + "\r" + body,
        "another field separator": message.replace("|", "#"),
        "the header twice": f"{msh}\r{message}",
        "a NUL in a field": message.replace("DOE^JANE", "DOE\x00^JANE"),
        "control characters": message.replace("WARD7", "W\x07A\x1bRD7"),
        "a broken escape": message.replace("DOE^JANE", "DOE\\X\\Z\\^JANE\\"),
        "values that are no numbers": message.replace("|97|", "|1e400|").replace("|72|", "|NaN|"),
        "a huge number": message.replace("|97|", "|" + "9" * 400 + "|"),
        "a thousand repetitions": message.replace("DOE^JANE", "~".join(["DOE^JANE"] * 1000)),
        "deep components": message.replace("DOE^JANE", "^" * 5000 + "&" * 5000),
        "an unknown version": message.replace("|2.6|", "|9.9|"),
        "a time that is not one": message.replace("+0000", "+9999"),
        "segments of spaces": message + "\r" + " " * 2000,
        "just a carriage return": "\r",
    }
    found = {name: value.encode() for name, value in text.items()}
    found["not UTF-8"] = message.replace("DOE^JANE", "D\xd6E^JANE").encode("latin-1")
    found["half of a multibyte character"] = message.encode()[:-1] + b"\xe2\x82"
    return found


async def test_broken_hl7_is_answered_with_an_ack_and_the_listener_serves_on(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    var_dir = tmp_path_factory.mktemp("hl7") / "var"
    async with (
        own_settings(backend, var_dir, request) as settings,
        deployed(listening_on(settings)) as hl7,
    ):
        wrong = []
        for name, raw in mutations(oru("MSG-SEC-1", at=now())).items():
            # A connection per message, so that one a sender cannot read cannot hide the next.
            async with connected(hl7.port) as gateway:
                await gateway.send_raw(START + raw + END)
                try:
                    ack = segments(await gateway.answer(timeout=15))
                except (TimeoutError, ConnectionError) as error:
                    wrong.append(f"{name}: no answer ({type(error).__name__})")
                    continue
            if "MSA" not in ack or ack["MSA"][1] not in ("AA", "AE", "AR"):
                wrong.append(f"{name}: {ack}")
        async with connected(hl7.port) as gateway:
            after = segments(await gateway.send(oru("MSG-SEC-2", at=now())))
        health = await hl7.api.http.get("/health")
    assert wrong == []
    assert after["MSA"][1:3] == ["AA", "MSG-SEC-2"]
    assert health.status_code == 200


# Searches an EHR might send, by mistake or not; each is refused or answered, never a failure.
HOSTILE_SEARCHES = [
    "patient=Patient/../../Patient",
    "patient=Patient/{patient_id}&date=2026-13-45",
    "patient=Patient/{patient_id}&date=ge9999-99-99T99:99",
    "patient=Patient/{patient_id}&date=eq" + "9" * 400,
    "patient=Patient/{patient_id}&_sort=;DROP TABLE reading",
    "patient=Patient/{patient_id}&code=%00",
    "patient=Patient/{patient_id}&code=" + ",".join(["8867-4"] * 2000),
    "patient=Patient/{patient_id}&patient=Patient/{patient_id}",
    "patient=Patient/{patient_id}&_include=*",
    "patient=Patient/{patient_id}&_format=xml",
    "patient=Patient/{patient_id}&_has:Observation:patient:code=1",
    "patient=Patient/{patient_id}&_cursor=" + "A" * 150,
    "patient=Patient/{patient_id}&_cursor=eyJ0IjoiMjAyNi0wMS0wMSJ9",
    "patient:missing=true",
    "subject=Patient/{patient_id}&subject:Patient.name=x",
]


@pytest.mark.parametrize("query", HOSTILE_SEARCHES)
async def test_a_hostile_fhir_search_is_refused_or_answered_never_a_failure(
    deployment: Deployment, query: str
) -> None:
    response = await deployment.api.http.get(
        "/fhir/r4/Observation?" + query.format(**deployment.ours.ids),
        headers=deployment.cast.auth("carol_clinician"),
    )
    assert response.status_code in (200, 400, 404, 422), response.text[:300]
    assert response.headers["content-type"].startswith("application/fhir+json")
    if response.status_code != 200:
        assert response.json()["resourceType"] == "OperationOutcome"


def twilio_signature(token: str, url: str, form: dict[str, str]) -> str:
    """Sign a callback as the SMS provider does (HMAC-SHA1 over the URL and sorted fields)."""
    data = url + "".join(name + form[name] for name in sorted(form))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


async def test_only_a_delivery_report_signed_by_the_sms_provider_is_taken(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token, public = "provider-auth-token", "https://medcloud.stmary.example"
    sms = NotificationSettings(
        sms_base_url="https://sms.provider.example/2010-04-01",
        sms_account_sid="AC" + "0" * 32,
        sms_auth_token=SecretStr(token),
        sms_from="+441000000000",
        public_url=public,
    )
    var_dir = tmp_path_factory.mktemp("sms") / "var"
    form = {"MessageSid": "SM" + uuid.uuid4().hex, "MessageStatus": "delivered"}
    url = f"{public}/api/v1/notifications/sms/status"
    async with (
        own_settings(backend, var_dir, request, notifications=sms) as settings,
        running(settings) as api,
    ):
        answers = {}
        for name, signature in {
            "unsigned": "",
            "signed with another token": twilio_signature("not-the-token", url, form),
            "signed for other fields": twilio_signature(token, url, form | {"MessageStatus": "x"}),
            "signed for another address": twilio_signature(token, "https://evil.example/", form),
            "signed": twilio_signature(token, url, form),
        }.items():
            response = await api.http.post(
                "/api/v1/notifications/sms/status",
                data=form,
                headers={"X-Twilio-Signature": signature},
            )
            answers[name] = response.status_code
    assert answers == {
        "unsigned": 403,
        "signed with another token": 403,
        "signed for other fields": 403,
        "signed for another address": 403,
        "signed": 204,
    }


def message(to: str) -> Message:
    return Message(
        idempotency_key=f"security:{uuid.uuid4().hex}",
        to=to,
        subject="test",
        text="test",
        payload={"event": "test"},
        secret="whsec_test",
    )


async def test_a_webhook_receivers_answer_is_read_only_so_far() -> None:
    # Its id is kept as the delivery's receipt, shown to admins: bounded, however much comes.
    async def flood(_: Request) -> tuple[int, dict[str, str], bytes]:
        body = b'{"id": "' + b"x" * 5_000_000 + b'"}'
        return 200, {"Content-Type": "application/json", "X-Request-Id": "r" * 5000}, body

    async with receivers() as start:
        receiver = await start(flood)
        channel = WebhookChannel(timeout=10)
        try:
            outcome = await channel.send(message(f"{receiver.url}/hook"))
        finally:
            await channel.close()
    assert outcome.status == "delivered"
    assert outcome.provider_id is None or len(outcome.provider_id) <= MAX_REASON_CHARS


async def test_a_webhook_receiver_that_never_answers_costs_a_timeout_not_a_sender() -> None:
    async with receivers() as start:
        receiver = await start(hang)
        channel = WebhookChannel(timeout=0.5)
        started = time.monotonic()
        try:
            outcome = await channel.send(message(f"{receiver.url}/hook"))
        finally:
            await channel.close()
    assert outcome.status != "delivered"
    assert outcome.retryable
    assert time.monotonic() - started < 5
