"""The email channel writes MIME itself: what it writes must read back, with the standard
parser, as exactly the message it was given, and no header value may add a header."""

from __future__ import annotations

import email
import email.policy
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medcloud.notifications.channels import EmailChannel, Message

CHANNEL = EmailChannel("127.0.0.1", 25, sender="Médcloud Alarms <alarms@stmary.example>")


def read_back(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    assert not parsed.defects
    return parsed


SURROGATES: list[Literal["Cs"]] = ["Cs"]
CONTROLS: list[Literal["Cs", "Cc"]] = ["Cs", "Cc"]
texts = st.text(st.characters(exclude_categories=SURROGATES, exclude_characters="\r"), max_size=400)


@given(subject=st.text(st.characters(exclude_categories=CONTROLS), max_size=120), text=texts)
def test_a_plain_message_reads_back_as_given(subject: str, text: str) -> None:
    raw = CHANNEL._build(Message("key-1", "bob@stmary.example", subject, text), "<m1@medcloud>")
    parsed = read_back(raw)
    assert parsed["Subject"] == subject
    assert parsed["From"] == "Médcloud Alarms <alarms@stmary.example>"
    assert parsed["X-Medcloud-Idempotency-Key"] == "key-1"
    assert parsed.get_content().replace("\r\n", "\n") == "\n".join(text.splitlines())
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@given(text=texts, html=texts)
def test_text_and_html_are_alternatives_of_one_message(text: str, html: str) -> None:
    message = Message("key-2", "bob@stmary.example", "Alarm", text, html=html)
    parsed = read_back(CHANNEL._build(message, "<m2@medcloud>"))
    assert parsed.get_content_type() == "multipart/alternative"
    plain, rich = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().replace("\r\n", "\n") == "\n".join(text.splitlines())
    assert rich.get_content().replace("\r\n", "\n") == "\n".join(html.splitlines())


@pytest.mark.parametrize("field", ["to", "subject", "idempotency_key"])
@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"])
def test_no_header_value_can_start_a_header(field: str, breaker: str) -> None:
    values = {"idempotency_key": "k", "to": "bob@stmary.example", "subject": "Alarm"}
    values[field] += f"{breaker}Bcc: mallory@evil.example"
    with pytest.raises(ValueError, match="line break"):
        CHANNEL._build(
            Message(values["idempotency_key"], values["to"], values["subject"], "t"), "<m>"
        )
