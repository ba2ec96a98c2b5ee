"""ADT rules one at a time: which events, which faults, how sex and birth date are read."""

from __future__ import annotations

from datetime import date

import pytest

from medcloud.interop.adt import parse_adt
from medcloud.interop.hl7v2 import parse

MSH = "MSH|^~\\&|REGADT|MCM|||20240301||{type}|7|P|2.5"
PID = "PID|||191919^^^GENHOS^MR||MASSIE^JAMES||{born}|{sex}"
PV1 = "PV1||I|W3^12^B"


@pytest.mark.parametrize("event", ["A01", "A04", "A08"])
def test_it_reads_admit_register_and_update(event: str) -> None:
    header, message = parse(
        "\r".join([MSH.format(type=f"ADT^{event}"), PID.format(born="19560129", sex="F"), PV1])
    )

    result = parse_adt(header, message)

    assert (result.event, result.sex, result.faults) == (event, "female", [])
    assert (result.ward, result.room, result.bed) == ("W3", "12", "B")
    assert result.birth_date == date(1956, 1, 29)


@pytest.mark.parametrize(
    ("type_", "code"), [("ADT^A03^ADT_A03", "201"), ("ORU^R01^ORU_R01", "200")]
)
def test_other_messages_are_faults(type_: str, code: str) -> None:
    header, message = parse("\r".join([MSH.format(type=type_), PID.format(born="", sex="")]))

    result = parse_adt(header, message)

    assert [(f.segment, f.field, f.code, f.severity) for f in result.faults][0] == (
        "MSH",
        9,
        code,
        "E",
    )


def test_a_message_without_pid_is_a_fault() -> None:
    header, message = parse("\r".join([MSH.format(type="ADT^A08"), PV1]))

    result = parse_adt(header, message)

    assert [(f.segment, f.field, f.code) for f in result.faults] == [("PID", None, "100")]
    assert result.identifiers == []


@pytest.mark.parametrize(
    ("sex", "read"),
    [
        ("M", "male"),
        ("F", "female"),
        ("O", "other"),
        ("A", "other"),
        ("U", "unknown"),
        ("N", "unknown"),
        ("", "unknown"),
        ("f", "female"),
    ],
)
def test_sex_is_read_from_hl7_table_0001(sex: str, read: str) -> None:
    header, message = parse(
        "\r".join([MSH.format(type="ADT^A04"), PID.format(born="", sex=sex), PV1])
    )

    assert parse_adt(header, message).sex == read


def test_an_unknown_sex_code_is_unknown_with_a_warning() -> None:
    header, message = parse(
        "\r".join([MSH.format(type="ADT^A04"), PID.format(born="", sex="Q"), PV1])
    )

    result = parse_adt(header, message)

    assert result.sex == "unknown"
    assert [(f.field, f.code, f.severity) for f in result.faults] == [(8, "103", "W")]


@pytest.mark.parametrize("born", ["1956", "195601", "19561301", "yesterday"])
def test_a_birth_date_that_is_not_a_full_date_is_left_out_with_a_warning(born: str) -> None:
    header, message = parse(
        "\r".join([MSH.format(type="ADT^A08"), PID.format(born=born, sex="M"), PV1])
    )

    result = parse_adt(header, message)

    assert result.birth_date is None
    assert [(f.field, f.code, f.severity) for f in result.faults] == [(7, "102", "W")]


def test_a_missing_pv1_leaves_the_location_unknown_with_a_warning() -> None:
    header, message = parse("\r".join([MSH.format(type="ADT^A08"), PID.format(born="", sex="M")]))

    result = parse_adt(header, message)

    assert (result.ward, result.room, result.bed) == (None, None, None)
    assert [(f.segment, f.code, f.severity) for f in result.faults] == [("PV1", "100", "W")]
