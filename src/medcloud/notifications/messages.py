"""The words of every notification, per locale: subject, plain text, HTML and SMS.

Templates live in `templates/<locale>/<kind>.{subject.txt,txt,html,sms.txt}` (Jinja2; HTML is
autoescaped). Only the values in `VALUES` reach them, and anything else is refused, so no
caller can put a patient's name or readings into a message by passing one more key. Subjects and
SMS, which lock screens and carriers show, carry only the priority, the ward, the bed and the
link. SMS use the GSM-7 alphabet (no typographic dashes) and at most 160 characters, one segment.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

KINDS = ("alarm", "acknowledged", "resolved", "channel_down", "no_one_on_call", "report_ready")
LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"
PRIORITIES = ("high", "medium", "low")
VALUES = frozenset(
    {
        "priority",
        "ward",
        "bed",
        "condition",
        "step",
        "link",
        "ack_link",
        "actor",
        "channel",
        "raised_at",
    }
)
"""Every value a template may see."""
REQUIRED: Mapping[str, frozenset[str]] = {
    "alarm": frozenset({"priority", "condition", "step", "link", "raised_at"}),
    "acknowledged": frozenset({"priority", "condition", "link", "raised_at"}),
    "resolved": frozenset({"priority", "condition", "link", "raised_at"}),
    "channel_down": frozenset({"channel", "link", "raised_at"}),
    "no_one_on_call": frozenset({"priority", "condition", "link", "raised_at"}),
    "report_ready": frozenset({"link", "raised_at"}),
}
"""The values each kind needs; the others default to None."""
SMS_MAX_CHARS = 160
_SMS_LABEL_CHARS = 24
"""Longest ward or bed label an SMS shows, so the link always fits."""

_TEMPLATES = Path(__file__).parent / "templates"
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Rendered:
    """One notification in each form a channel needs."""

    subject: str
    text: str
    html: str | None
    sms: str


def render(kind: str, locale: str, values: Mapping[str, object]) -> Rendered:
    """Render notification `kind` in `locale` (a tag like `de-CH` uses `de`; an unknown one,
    English); raise ValueError for an unknown kind, a missing or unexpected value."""
    if kind not in REQUIRED:
        raise ValueError(f"unknown notification kind {kind!r}")
    unexpected = set(values) - VALUES
    if unexpected:
        raise ValueError(f"values not allowed in a notification: {', '.join(sorted(unexpected))}")
    missing = REQUIRED[kind] - {name for name, value in values.items() if value is not None}
    if missing:
        raise ValueError(f"a {kind} notification needs {', '.join(sorted(missing))}")
    context = {name: values.get(name) for name in VALUES}
    if context["priority"] is not None and context["priority"] not in PRIORITIES:
        raise ValueError(f"priority is one of {', '.join(PRIORITIES)}")
    for name in ("condition", "channel"):
        # Codes go through the locale's macros, whose output an HTML template does not escape.
        code = context[name]
        if code is not None and (not isinstance(code, str) or not _CODE.fullmatch(code)):
            raise ValueError(f"{name} is a code like heart_rate_high")
    step = context["step"]
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValueError("step is an integer")
    raised_at = context["raised_at"]
    if raised_at is not None and (
        not isinstance(raised_at, dt.datetime) or raised_at.utcoffset() is None
    ):
        raise ValueError("raised_at is an aware datetime")
    folder = _locale(locale)
    env = _environment()
    subject = env.get_template(f"{folder}/{kind}.subject.txt").render(context)
    text = env.get_template(f"{folder}/{kind}.txt").render(context)
    try:
        html: str | None = env.get_template(f"{folder}/{kind}.html").render(context)
    except jinja2.TemplateNotFound:
        html = None
    sms_context = {
        **context,
        "ward": _clip(context["ward"], _SMS_LABEL_CHARS),
        "bed": _clip(context["bed"], _SMS_LABEL_CHARS),
    }
    sms = env.get_template(f"{folder}/{kind}.sms.txt").render(sms_context)
    return Rendered(
        # One line each: a label with a line break must not start a new mail header.
        subject=_one_line(subject),
        text=text.strip() + "\n",
        html=html,
        sms=_fit_sms(_one_line(sms), str(context["link"] or "")),
    )


def _locale(tag: str) -> str:
    language = tag.replace("_", "-").split("-")[0].lower()
    return language if language in LOCALES else DEFAULT_LOCALE


@functools.cache
def _environment() -> jinja2.Environment:
    """Build the template environment once, on first use (no I/O at import time)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc_minutes"] = _utc_minutes
    env.filters["words"] = _words
    return env


def _utc_minutes(value: dt.datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC, to the minute: 2024-05-01T09:30Z."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def _words(code: object) -> str:
    """Turn a code like `heart_rate_high` into words: `heart rate high`."""
    return " ".join(str(code).replace("_", " ").replace("-", " ").split())


def _clip(value: object, limit: int) -> object:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fit_sms(sms: str, link: str) -> str:
    """Keep an SMS to one segment, shortening the words before the link rather than the link."""
    if len(sms) <= SMS_MAX_CHARS:
        return sms
    if link and sms.endswith(link) and len(link) <= SMS_MAX_CHARS - 4:
        head = sms[: -len(link)].rstrip()[: SMS_MAX_CHARS - len(link) - 4].rstrip()
        return f"{head}... {link}"
    return sms[: SMS_MAX_CHARS - 3] + "..."
