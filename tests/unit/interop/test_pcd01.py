"""PCD-01 rules one at a time: what is a reading, what is skipped, what is a fault."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medcloud.interop.adt import parse_adt
from medcloud.interop.hl7v2 import Unparseable, parse
from medcloud.interop.pcd01 import Oru, parse_oru

MSH = "MSH|^~\\&|GW^0019B9FFFE123456^EUI-64|ICU|||{msh7}||ORU^R01^ORU_R01|CTRL1|P|2.6"
PID = "PID|||MRN42^^^STMARY^MR||DOE^JANE"
OBR = "OBR|1|||182777000^monitoring of patient^SCT|||{obr7}"
SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"
PULSE = "149530^MDC_PULS_OXIM_PULS_RATE^MDC"
ECG = "147842^MDC_ECG_HEART_RATE^MDC"
PERCENT = "262688^MDC_DIM_PERCENT^MDC"
BPM = "264864^MDC_DIM_BEAT_PER_MIN^MDC"
AT = datetime(2024, 3, 1, 11, 0, tzinfo=UTC)


def obx(
    code: str = SPO2,
    value: str = "97",
    unit: str = PERCENT,
    *,
    value_type: str = "NM",
    sub_id: str = "1.1.1.1",
    status: str = "R",
    at: str = "",
    equipment: str = "",
) -> str:
    return f"OBX|1|{value_type}|{code}|{sub_id}|{value}|{unit}|||||{status}|||{at}||||{equipment}"


def oru(*rows: str, msh7: str = "20240301120000+0100", obr7: str = "", pid: str = PID) -> Oru:
    segments = [MSH.format(msh7=msh7), pid, OBR.format(obr7=obr7), *rows]
    header, message = parse("\r".join(s for s in segments if s))
    return parse_oru(header, message)


def test_a_numeric_row_is_a_reading_in_the_catalogue_unit() -> None:
    result = oru(obx())

    assert [(o.type, o.value, o.at, o.segment) for o in result.observations] == [
        ("spo2", 97.0, AT, 1)
    ]
    assert (result.faults, result.skipped) == ([], 0)
    assert [(i.value, i.authority, i.type_code) for i in result.patient] == [
        ("MRN42", "STMARY", "MR")
    ]


@pytest.mark.parametrize("status", ["X", "D", "W", "N", "I", "O", "x"])
def test_a_result_the_device_could_not_obtain_is_never_stored(status: str) -> None:
    result = oru(obx(status=status))

    assert (result.observations, result.faults, result.skipped) == ([], [], 1)


@pytest.mark.parametrize("status", ["F", "R", "P", "C", ""])
def test_final_preliminary_and_corrected_results_are_stored(status: str) -> None:
    assert len(oru(obx(status=status)).observations) == 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "8388607",
        "8388606",
        "8388608",
        "8388609",
        "8388610",
        "-8388606",
        "-8388607",
        "-8388608",
        "8388607.0",
        "NaN",
        "nan",
        "NRes",
        "INF",
        "+INF",
        "-INF",
    ],
)
def test_11073_no_value_markers_are_skipped_not_faults(value: str) -> None:
    result = oru(obx(value=value))

    assert (result.observations, result.faults, result.skipped) == ([], [], 1)


@pytest.mark.parametrize(
    ("value", "value_type", "field"),
    [
        ("9O", "NM", 5),
        ("1e5", "NM", 5),
        ("97^98", "NM", 5),
        ("97~98", "NM", 5),
        ("9" * 400, "NM", 5),
        (">^200", "SN", 5),
        ("^1^/^2", "SN", 5),
        ("97", "ST", 2),
        ("97", "CWE", 2),
    ],
)
def test_a_stored_metric_whose_value_is_not_one_number_is_a_fault(
    value: str, value_type: str, field: int
) -> None:
    result = oru(obx(value=value, value_type=value_type))

    assert result.observations == []
    assert [(f.segment, f.sequence, f.field, f.code) for f in result.faults] == [
        ("OBX", 1, field, "102")
    ]


@pytest.mark.parametrize("value", ["^97", "=^97"])
def test_a_structured_numeric_with_one_exact_value_is_a_reading(value: str) -> None:
    assert [o.value for o in oru(obx(value=value, value_type="SN")).observations] == [97.0]


@pytest.mark.parametrize(
    ("unit", "field", "code"),
    [("", 6, "101"), ("999999^MDC_DIM_NONE^MDC", 6, "103"), ("266016^MDC_DIM_MMHG^MDC", 6, "103")],
)
def test_a_unit_that_is_missing_unknown_or_wrong_is_a_fault(
    unit: str, field: int, code: str
) -> None:
    result = oru(obx(unit=unit))

    assert result.observations == []
    assert [(f.field, f.code) for f in result.faults] == [(field, code)]


def test_a_metric_not_stored_is_skipped_whatever_its_value() -> None:
    result = oru(
        obx(code="150488^MDC_BLD_PERF_INDEX^MDC", value="garbage"),
        obx(code="0^MDC_ATTR_LIMIT_CURR^99X", value="90^100", value_type="CWE"),
        obx(code="^MDC_ATTR_LIMIT_CURR^MDC", value="88"),
    )

    assert (result.observations, result.faults, result.skipped) == ([], [], 3)


def test_the_time_is_obx14_else_obr7_else_msh7() -> None:
    own = oru(obx(at="20240301100000+0000"), obr7="20240301103000+0000")
    group = oru(obx(), obr7="20240301103000+0000")
    message = oru(obx())

    assert own.observations[0].at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert group.observations[0].at == datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
    assert message.observations[0].at == AT


def test_times_without_offset_are_all_in_the_zone_given_to_parse_oru() -> None:
    segments = [MSH.format(msh7="20240301120000"), PID, OBR.format(obr7=""), obx()]
    header, message = parse("\r".join(segments))

    result = parse_oru(header, message, default_tz=timezone(timedelta(hours=1)))

    assert [o.at for o in result.observations] == [AT]


@pytest.mark.parametrize(
    ("at", "obr7", "msh7", "fault"),
    [
        ("202403011", "", "", ("OBX", 1, 14, "102")),
        ("", "20241301", "", ("OBR", 1, 7, "102")),
        ("", "", "never", ("MSH", 1, 7, "102")),
        ("", "", "", ("OBX", 1, 14, "101")),
    ],
)
def test_a_reading_without_a_readable_time_is_a_fault(
    at: str, obr7: str, msh7: str, fault: tuple[str, int, int, str]
) -> None:
    result = oru(obx(at=at), obr7=obr7, msh7=msh7)

    assert result.observations == []
    assert [(f.segment, f.sequence, f.field, f.code) for f in result.faults] == [fault]


def test_one_bad_group_time_is_one_fault_however_many_rows_share_it() -> None:
    result = oru(obx(), obx(code=PULSE, value="70", unit=BPM), obr7="2024x")

    assert len(result.faults) == 1


def test_the_ecg_heart_rate_wins_over_a_pulse_rate_at_the_same_instant() -> None:
    result = oru(obx(code=PULSE, value="70", unit=BPM), obx(code=ECG, value="72", unit=BPM))

    assert [(o.type, o.value, o.segment) for o in result.observations] == [("heart_rate", 72.0, 2)]
    assert result.skipped == 1


def test_pulse_and_ecg_rates_of_different_equipment_or_instants_are_both_kept() -> None:
    result = oru(
        obx(code=PULSE, value="70", unit=BPM, equipment="0019B9FFFE000001"),
        obx(code=ECG, value="72", unit=BPM, equipment="0019B9FFFE000002"),
        obx(code=PULSE, value="71", unit=BPM, at="20240301100000+0000"),
        obx(code=ECG, value="73", unit=BPM, at="20240301100001+0000"),
    )

    assert [o.value for o in result.observations] == [70.0, 72.0, 71.0, 73.0]


def test_each_metric_takes_the_equipment_of_its_own_mds() -> None:
    result = oru(
        obx(
            code="69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC",
            value="",
            sub_id="1.0.0.0",
            status="X",
            equipment="AAAAAAAAAAAAAAAA^EUI-64",
        ),
        obx(
            code="69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC",
            value="",
            sub_id="2.0.0.0",
            status="X",
            equipment="BBBBBBBBBBBBBBBB^EUI-64",
        ),
        obx(sub_id="2.1.1.1"),
        obx(code=ECG, value="60", unit=BPM, sub_id="1.2.1.1"),
        obx(code=PULSE, value="61", unit=BPM, sub_id="3.1.1.2"),
        obx(code=ECG, value="62", unit=BPM, sub_id="1.2.1.1", equipment="CCCC^X"),
    )

    assert [o.equipment for o in result.observations] == [
        "BBBBBBBBBBBBBBBB",
        "AAAAAAAAAAAAAAAA",
        None,
        "CCCC",
    ]
    assert result.skipped == 2


def test_a_message_without_pid_or_obr_is_read_for_an_unidentified_patient() -> None:
    header, message = parse("\r".join([MSH.format(msh7="20240301120000+0100"), obx()]))

    result = parse_oru(header, message)

    assert result.patient == []
    assert [o.at for o in result.observations] == [AT]


def test_a_message_that_is_not_oru_r01_is_a_fault() -> None:
    header, message = parse(MSH.format(msh7="20240301").replace("ORU^R01^ORU_R01", "ORU^R30"))

    result = parse_oru(header, message)

    assert [(f.segment, f.field, f.code) for f in result.faults] == [("MSH", 9, "200")]


def test_a_large_message_is_read_whole() -> None:
    rows = [
        obx(value=str(90 + i % 10), at=f"20240301{i // 3600:02}{i // 60 % 60:02}{i % 60:02}")
        for i in range(3000)
    ]

    result = oru(*rows)

    assert len(result.observations) == 3000
    assert result.observations[-1].segment == 3000


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


@settings(max_examples=300, deadline=None)
@given(name=TEXT, value=TEXT, note=TEXT)
def test_arbitrary_text_is_refused_or_read_never_raises_nor_invents_a_value(
    name: str, value: str, note: str
) -> None:
    raw = "\r".join(
        [
            MSH.format(msh7="20240301120000+0100"),
            f"PID|||MRN42^^^STMARY^MR||{name}^JANE",
            OBR.format(obr7=""),
            f"NTE|1||{note}",
            obx(value=value),
        ]
    )
    try:
        header, message = parse(raw)
    except Unparseable:
        return

    result = parse_oru(header, message)

    sent = {float(n) for n in NUMBER.findall(raw)}
    assert all(o.type != "spo2" or o.value in sent for o in result.observations)
    assert all(f.code in ("101", "102", "103") for f in result.faults)


@settings(max_examples=200, deadline=None)
@given(name=TEXT, born=TEXT)
def test_arbitrary_text_in_an_adt_pid_never_raises(name: str, born: str) -> None:
    raw = "\r".join(
        [
            "MSH|^~\\&|REG|H|||20240301||ADT^A08^ADT_A01|9|P|2.5",
            f"PID|||MRN42^^^STMARY^MR||{name}||{born}|F",
            "PV1||I|ICU^1^2",
        ]
    )
    try:
        header, message = parse(raw)
    except Unparseable:
        return

    admission = parse_adt(header, message)

    assert admission.sex in ("male", "female", "other", "unknown")
