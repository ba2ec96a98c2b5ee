"""Notification texts: every kind in every locale, no patient data where screens show it, SMS in
one segment, HTML escaped, locale fallback."""

from __future__ import annotations

import datetime as dt

import pytest

from medcloud.notifications.messages import KINDS, LOCALES, SMS_MAX_CHARS, Rendered, render

LINK = "https://medcloud.example/alerts/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ACK_LINK = "https://medcloud.example/ack/eyJhIjoiYWxlcnQtMSJ9.c2lnbmF0dXJl"
RAISED_AT = dt.datetime(2026, 3, 1, 9, 30, 45, tzinfo=dt.timezone(dt.timedelta(hours=1)))
VALUES: dict[str, object] = {
    "priority": "high",
    "ward": "3B",
    "bed": "12",
    "condition": "heart_rate_high",
    "step": 1,
    "link": LINK,
    "ack_link": ACK_LINK,
    "actor": "carol.nurse@stmary.example",
    "channel": "email",
    "raised_at": RAISED_AT,
}
ALL = [(kind, locale) for kind in KINDS for locale in LOCALES]


def all_forms(rendered: Rendered) -> list[str]:
    return [rendered.subject, rendered.text, rendered.html or "", rendered.sms]


@pytest.mark.parametrize(("kind", "locale"), ALL)
def test_every_kind_renders_in_every_locale(kind: str, locale: str) -> None:
    rendered = render(kind, locale, VALUES)
    assert rendered.subject and rendered.text.strip() and rendered.html and rendered.sms
    assert "\n" not in rendered.subject
    assert LINK in rendered.text and LINK in rendered.html and rendered.sms.endswith(LINK)
    assert "2026-03-01T08:30Z" in rendered.text  # UTC, to the minute
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(("kind", "locale"), ALL)
def test_subjects_and_sms_carry_only_priority_ward_bed_and_link(kind: str, locale: str) -> None:
    rendered = render(kind, locale, VALUES)
    for short in (rendered.subject, rendered.sms):
        for private in ("heart", "Herz", "carol", ACK_LINK, "2026"):
            assert private not in short
    if kind == "report_ready":
        # A report is of a ward (or a whole organisation), never of a bed.
        assert "3B" in rendered.subject and "12" not in rendered.subject
    elif kind != "channel_down":
        assert "3B" in rendered.subject and "12" in rendered.subject


@pytest.mark.parametrize(("kind", "locale"), ALL)
def test_a_patient_name_among_the_values_is_refused(kind: str, locale: str) -> None:
    with pytest.raises(ValueError, match="patient_name"):
        render(kind, locale, {**VALUES, "patient_name": "Dave Patient"})


def test_unknown_values_are_refused_even_with_a_harmless_name() -> None:
    with pytest.raises(ValueError, match="heart_rate"):
        render("alarm", "en", {**VALUES, "heart_rate": 181})


@pytest.mark.parametrize(("kind", "locale"), ALL)
def test_an_sms_fits_one_segment_even_with_long_labels(kind: str, locale: str) -> None:
    long_values = {**VALUES, "ward": "Intensive care unit, north wing " * 4, "bed": "B" * 90}
    sms = render(kind, locale, long_values).sms
    assert len(sms) <= SMS_MAX_CHARS
    assert sms.endswith(LINK)  # shortened before the link, never the link itself


def test_an_sms_with_an_overlong_link_is_still_one_segment() -> None:
    sms = render("alarm", "en", {**VALUES, "link": LINK + "/" + "x" * 200}).sms
    assert len(sms) == SMS_MAX_CHARS


def test_html_escapes_the_labels() -> None:
    values = {**VALUES, "ward": "<script>alert(1)</script>", "actor": '"><img src=x>'}
    for kind in KINDS:
        html = render(kind, "en", values).html or ""
        assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (render("alarm", "en", values).html or "")


def test_plain_text_keeps_the_labels_as_they_are() -> None:
    text = render("alarm", "en", {**VALUES, "ward": "A&E <1>"}).text
    assert "ward A&E <1>" in text


def test_a_line_break_in_a_label_cannot_start_a_new_header() -> None:
    rendered = render("alarm", "en", {**VALUES, "ward": "3B\r\nBcc: mallory@evil.example"})
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    assert "\n" not in rendered.sms


def test_the_condition_reads_as_words() -> None:
    assert "Condition: heart rate high" in render("alarm", "en", VALUES).text
    assert "Herzfrequenz hoch" in render("alarm", "de", VALUES).text
    assert "spo2 low" in render("alarm", "en", {**VALUES, "condition": "spo2_low"}).text


def test_a_condition_that_is_not_a_code_is_refused() -> None:
    with pytest.raises(ValueError, match="condition"):
        render("alarm", "en", {**VALUES, "condition": "<b>heart</b>"})


def test_the_first_step_is_an_alarm_and_later_ones_are_escalations() -> None:
    assert render("alarm", "en", {**VALUES, "step": 0}).subject == "[HIGH] Alarm – ward 3B, bed 12"
    assert render("alarm", "en", VALUES).subject == "[HIGH] Escalated alarm – ward 3B, bed 12"
    assert render("alarm", "de", {**VALUES, "step": 0}).subject == (
        "[HOCH] Alarm – Station 3B, Bett 12"
    )


def test_ward_and_bed_may_be_missing() -> None:
    values = {**VALUES, "ward": None, "bed": None}
    assert render("alarm", "en", values).subject == "[HIGH] Escalated alarm"
    assert render("alarm", "en", {**VALUES, "bed": None}).subject.endswith("– ward 3B")
    assert render("resolved", "en", {**VALUES, "ward": None}).subject.endswith("– bed 12")


def test_optional_values_may_be_left_out() -> None:
    values = {
        "priority": "low",
        "condition": "anomaly",
        "step": 0,
        "link": LINK,
        "raised_at": RAISED_AT,
    }
    rendered = render("alarm", "en", values)
    assert rendered.subject == "[LOW] Alarm"
    assert "Acknowledge" not in rendered.text
    assert "a colleague" in render("acknowledged", "en", values).text


def test_the_ack_link_appears_in_the_email_only() -> None:
    rendered = render("alarm", "en", VALUES)
    assert ACK_LINK in rendered.text and ACK_LINK in (rendered.html or "")
    assert ACK_LINK not in rendered.sms


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_value_is_named(kind: str) -> None:
    with pytest.raises(ValueError, match="link"):
        render(kind, "en", {**VALUES, "link": None})


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="priority"):
        render("alarm", "en", {**VALUES, "priority": "urgent"})
    with pytest.raises(ValueError, match="aware"):
        render("alarm", "en", {**VALUES, "raised_at": dt.datetime(2026, 3, 1, 9, 30)})
    with pytest.raises(ValueError, match="step"):
        render("alarm", "en", {**VALUES, "step": "1"})
    with pytest.raises(ValueError, match="kind"):
        render("page", "en", VALUES)


@pytest.mark.parametrize("tag", ["de", "de-CH", "de_AT", "DE"])
def test_a_german_tag_renders_german(tag: str) -> None:
    assert render("resolved", tag, VALUES).subject == "[HOCH] Beendet – Station 3B, Bett 12"


@pytest.mark.parametrize("tag", ["fr", "", "xx-YY", "en-GB"])
def test_another_locale_falls_back_to_english(tag: str) -> None:
    assert render("resolved", tag, VALUES) == render("resolved", "en", VALUES)
