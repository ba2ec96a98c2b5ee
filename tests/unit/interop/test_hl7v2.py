"""The HL7 v2 envelope: reading MSH, decoding escapes, reading times, writing ACKs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import hl7
import pytest

from medcloud.interop.hl7v2 import (
    Fault,
    Unparseable,
    ack,
    escape,
    identifiers,
    parse,
    parse_time,
)

MONITOR = (
    "MSH|^~\\&|VSP^080019FFFE134535^EUI-64|GE Healthcare|MEDCLOUD|ST MARY|20130122134100+0100||"
    "ORU^R01^ORU_R01|004097134535|P|2.6|||NE|AL||UNICODE UTF-8\r"
    "PID|||HED12^^^PID^MR||LAZY^KITTY\r"
)
NOW = datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC)


def test_it_reads_the_header() -> None:
    header, message = parse(MONITOR)

    assert header.control_id == "004097134535"
    assert (header.message_type, header.trigger, header.structure) == ("ORU", "R01", "ORU_R01")
    assert header.sending_application.namespace == "VSP"
    assert header.sending_application.universal_id == "080019FFFE134535"
    assert header.sending_application.universal_id_type == "EUI-64"
    assert header.sending_facility.namespace == "GE Healthcare"
    assert header.receiving_application.namespace == "MEDCLOUD"
    assert header.sent_at == datetime(2013, 1, 22, 12, 41, tzinfo=UTC)
    assert (header.processing_id, header.version) == ("P", "2.6")
    assert (header.field_separator, header.encoding_characters) == ("|", "^~\\&")
    assert [s.name for s in message.segments] == ["MSH", "PID"]


def test_it_takes_bytes_and_mllp_framing_and_crlf() -> None:
    framed = b"\x0b" + MONITOR.replace("\r", "\r\n").encode() + b"\x1c\r"

    header, message = parse(framed)

    assert header.control_id == "004097134535"
    assert [s.name for s in message.segments] == ["MSH", "PID"]


def test_it_reads_latin1_when_msh18_says_so() -> None:
    raw = "MSH|^~\\&|A|B|||20240101||ADT^A08|1|P|2.5||||||8859/1\rPID|||1||MÜLLER\r"

    _, message = parse(raw.encode("latin-1"))

    pid = message.first("PID")
    assert pid is not None and pid.value(5) == "MÜLLER"


@pytest.mark.parametrize(
    ("raw", "control_id"),
    [
        ("", None),
        ("garbage", None),
        ("PID|||1\rMSH|^~\\&|A", None),
        ("MSH|^~\\&", None),
        ("MSH|^^\\&|A|B|||20240101||ORU^R01|C7|P|2.6", "C7"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01|C8|P|2.6\rpid|bad", "C8"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01|C9|P|2.6\rP|x", "C9"),
        ("MSH|^~\\&|A|B|||20240101||^R01|C10|P|2.6", "C10"),
        ("MSH|^~\\&|A|B|||20240101||ORU^R01||P|2.6", None),
        (b"MSH|^~\\&|A|B|||20240101||ORU^R01|C11|P|2.6\rPID|||\xff\xfe", None),
    ],
)
def test_it_refuses_what_is_not_hl7_v2(raw: str | bytes, control_id: str | None) -> None:
    with pytest.raises(Unparseable) as refused:
        parse(raw)

    assert refused.value.reason
    if isinstance(raw, str):
        assert refused.value.control_id == control_id


def test_an_unreadable_msh7_leaves_the_time_unknown() -> None:
    header, _ = parse(MONITOR.replace("20130122134100+0100", "yesterday"))

    assert header.sent_at is None


@pytest.mark.parametrize(
    ("escaped", "literal"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b\\T\\c\\R\\d\\E\\e", "a^b&c~d\\e"),
        ("\\X41\\\\X42\\", "AB"),
        ("caf\\XC3A9\\", "café"),
        ("line\\.br\\next", "line\nnext"),
        ("\\H\\bold\\N\\", "bold"),
        ("odd\\Zlocal\\end", "oddend"),
        ("dangling\\", "dangling"),
        ("\\.sp2\\", "\n"),
    ],
)
def test_escape_sequences_decode_to_literal_characters(escaped: str, literal: str) -> None:
    _, message = parse(f"MSH|^~\\&|A|B|||20240101||ADT^A08|1|P|2.5\rNTE|1||{escaped}\r")

    note = message.first("NTE")
    assert note is not None and note.value(3) == literal


def test_values_follow_the_senders_own_encoding_characters() -> None:
    raw = "MSH#:*!@#A#B###20240101##ADT:A08#1#P#2.5\rPID###7:::AUTH:MR*8:::X:PI##DOE:JO!F!\r"

    header, message = parse(raw)

    pid = message.first("PID")
    assert pid is not None
    assert (header.message_type, header.trigger) == ("ADT", "A08")
    assert [i.value for i in identifiers(pid)] == ["7", "8"]
    assert pid.value(5, 1) == "DOE"
    assert pid.value(5, 2) == "JO#"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("202403", datetime(2024, 3, 1, tzinfo=UTC)),
        ("20240301", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024030112", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("202403011205", datetime(2024, 3, 1, 12, 5, tzinfo=UTC)),
        ("20240301120507", datetime(2024, 3, 1, 12, 5, 7, tzinfo=UTC)),
        ("20240301120507.5", datetime(2024, 3, 1, 12, 5, 7, 500_000, tzinfo=UTC)),
        ("20240301120507.1234", datetime(2024, 3, 1, 12, 5, 7, 123_400, tzinfo=UTC)),
        ("20240301120507+0100", datetime(2024, 3, 1, 11, 5, 7, tzinfo=UTC)),
        ("20240301120507.25-0530", datetime(2024, 3, 1, 17, 35, 7, 250_000, tzinfo=UTC)),
        ("202403011205+0000", datetime(2024, 3, 1, 12, 5, tzinfo=UTC)),
    ],
)
def test_it_reads_hl7_times_as_utc(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_a_time_without_offset_is_in_the_zone_the_caller_gives() -> None:
    cet = timezone(timedelta(hours=1))

    assert parse_time("20240301120000", cet) == datetime(2024, 3, 1, 11, tzinfo=UTC)
    assert parse_time("20240301120000+0000", cet) == datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "202",
        "20240",
        "20241301",
        "20240230",
        "20240301250000",
        "2024030112.5",
        "20240301120000+2500",
        "20240301120000+01",
        "2024-03-01",
        "20240301120000.1234567",
    ],
)
def test_it_refuses_what_is_not_an_hl7_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_an_accepting_ack_answers_the_inbound_control_id() -> None:
    header, _ = parse(MONITOR)

    answer = ack(header, "AA", now=NOW, control_id="MC0001")

    assert answer.endswith("\r")
    msh, msa = answer.rstrip("\r").split("\r")
    assert msh == (
        "MSH|^~\\&|MEDCLOUD|MEDCLOUD|VSP^080019FFFE134535^EUI-64|GE Healthcare|"
        "20240301120005+0000||ACK^R01^ACK|MC0001|P|2.6"
    )
    assert msa == "MSA|AA|004097134535"


def test_an_error_ack_locates_each_fault() -> None:
    header, _ = parse(MONITOR)
    faults = [
        Fault("OBX", 3, 5, None, "102", "OBX-5 is not a number"),
        Fault("OBX", 4, 6, 1, "103", "OBX-6 unit is not a known unit"),
        Fault("PV1", 1, None, None, "100", "the PV1 segment is missing", "W"),
    ]

    answer = ack(header, "AE", now=NOW, control_id="MC0002", faults=faults)

    parsed = hl7.parse(answer)
    assert str(parsed.segment("MSA")) == "MSA|AE|004097134535|OBX-5 is not a number"
    errors = [str(s) for s in parsed.segments("ERR")]
    assert errors == [
        "ERR||OBX^3^5|102^Data type error^HL70357|E||||OBX-5 is not a number",
        "ERR||OBX^4^6^1^1|103^Table value not found^HL70357|E||||OBX-6 unit is not a known unit",
        "ERR||PV1^1|100^Segment sequence error^HL70357|W||||the PV1 segment is missing",
    ]


def test_a_reject_of_an_unreadable_message_answers_what_control_id_it_could_recover() -> None:
    with pytest.raises(Unparseable) as refused:
        parse("MSH|^^\\&|A|B|||20240101||ORU^R01|C7|P|2.6")

    recovered = ack(
        None,
        "AR",
        now=NOW,
        control_id="MC0003",
        inbound_control_id=refused.value.control_id,
        text=refused.value.reason,
    )
    unknown = ack(None, "AR", now=NOW, control_id="MC0004", text="not HL7")

    assert recovered.split("\r")[1].startswith("MSA|AR|C7|")
    assert unknown.split("\r")[1] == "MSA|AR||not HL7"
    assert "|ACK|MC0004|P|2.6" in unknown.split("\r")[0]


def test_text_in_an_ack_cannot_open_a_field_or_a_segment() -> None:
    header, _ = parse(MONITOR.replace("004097134535", "ID\\F\\1\\S\\2"))
    hostile = "bad|value\rMSH|^~\\&|EVIL\nERR|x^y~z&w\\"
    faults = [Fault("OBX", 1, 5, None, "102", hostile)]

    answer = ack(header, "AE", now=NOW, control_id="MC|0005", faults=faults, text=hostile)

    parsed = hl7.parse(answer)
    assert [str(s[0]) for s in parsed] == ["MSH", "MSA", "ERR"]
    assert len(parsed.segment("MSA")) == 4
    assert len(parsed.segment("ERR")) == 9
    assert parsed.unescape(str(parsed.segment("MSA")[2])) == "ID|1^2"
    assert parsed.unescape(str(parsed.segment("MSH")[10])) == "MC|0005"
    assert parsed.unescape(str(parsed.segment("ERR")[8])) == (
        "bad|value MSH|^~\\&|EVIL ERR|x^y~z&w\\"
    )


def test_escaping_writes_only_printable_ascii() -> None:
    assert escape("é\u20ac\t|") == "\\XC3A9\\\\XE282AC\\ \\F\\"


def test_an_ack_needs_an_aware_time() -> None:
    with pytest.raises(ValueError):
        ack(None, "AR", now=datetime(2024, 3, 1), control_id="MC0006")
