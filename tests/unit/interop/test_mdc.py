"""The MDC tables, tested as tables: each code, each way senders write it."""

from __future__ import annotations

import pytest

from medcloud.interop import mdc
from medcloud.platform.catalogue import CATALOGUE, accepted_units

METRICS = [
    (150456, "MDC_PULS_OXIM_SAT_O2", "spo2"),
    (147842, "MDC_ECG_HEART_RATE", "heart_rate"),
    (149514, "MDC_PULS_RATE", "heart_rate"),
    (149530, "MDC_PULS_OXIM_PULS_RATE", "heart_rate"),
    (149546, "MDC_PULS_RATE_NON_INV", "heart_rate"),
    (149522, "MDC_BLD_PULS_RATE_INV", "heart_rate"),
    (151562, "MDC_RESP_RATE", "respiratory_rate"),
    (151570, "MDC_AWAY_RESP_RATE", "respiratory_rate"),
    (151578, "MDC_TTHOR_RESP_RATE", "respiratory_rate"),
    (151594, "MDC_CO2_RESP_RATE", "respiratory_rate"),
    (151658, "MDC_PULS_OXIM_PLETH_RESP_RATE", "respiratory_rate"),
    (150021, "MDC_PRESS_BLD_NONINV_SYS", "systolic_bp"),
    (150022, "MDC_PRESS_BLD_NONINV_DIA", "diastolic_bp"),
    (150023, "MDC_PRESS_BLD_NONINV_MEAN", "mean_bp"),
    (150301, "MDC_PRESS_CUFF_SYS", "systolic_bp"),
    (150302, "MDC_PRESS_CUFF_DIA", "diastolic_bp"),
    (150303, "MDC_PRESS_CUFF_MEAN", "mean_bp"),
    (150344, "MDC_TEMP", "temperature"),
    (150364, "MDC_TEMP_BODY", "temperature"),
    (150368, "MDC_TEMP_CORE", "temperature"),
    (150392, "MDC_TEMP_TYMP", "temperature"),
    (188420, "MDC_TEMP_RECT", "temperature"),
    (188424, "MDC_TEMP_ORAL", "temperature"),
    (188428, "MDC_TEMP_EAR", "temperature"),
    (188452, "MDC_TEMP_AXILLA", "temperature"),
    (188456, "MDC_TEMP_GIT", "temperature"),
    (188496, "MDC_TEMP_AXIL", "temperature"),
    (160184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", "glucose"),
    (160188, "MDC_CONC_GLU_CAPILLARY_PLASMA", "glucose"),
    (160192, "MDC_CONC_GLU_VENOUS_WHOLEBLOOD", "glucose"),
    (160196, "MDC_CONC_GLU_VENOUS_PLASMA", "glucose"),
    (160200, "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD", "glucose"),
    (160204, "MDC_CONC_GLU_ARTERIAL_PLASMA", "glucose"),
    (188736, "MDC_MASS_BODY_ACTUAL", "weight"),
]

NOT_STORED = [
    (150388, "MDC_TEMP_SKIN"),
    (150033, "MDC_PRESS_BLD_ART_SYS"),
    (148066, "MDC_ECG_V_P_C_RATE"),
    (150488, "MDC_BLD_PERF_INDEX"),
    (188740, "MDC_LEN_BODY_ACTUAL"),
    (69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS"),
]

UNITS = [
    ("262688", "MDC_DIM_PERCENT", "%"),
    ("264864", "MDC_DIM_BEAT_PER_MIN", "/min"),
    ("264928", "MDC_DIM_RESP_PER_MIN", "/min"),
    ("266016", "MDC_DIM_MMHG", "mm[Hg]"),
    ("265987", "MDC_DIM_KILO_PASCAL", "kPa"),
    ("268192", "MDC_DIM_DEGC", "Cel"),
    ("266560", "MDC_DIM_FAHR", "[degF]"),
    ("266528", "MDC_DIM_KELVIN", "K"),
    ("266866", "MDC_DIM_MILLI_MOLE_PER_L", "mmol/L"),
    ("264274", "MDC_DIM_MILLI_G_PER_DL", "mg/dL"),
    ("263875", "MDC_DIM_KILO_G", "kg"),
    ("263872", "MDC_DIM_G", "g"),
    ("263904", "MDC_DIM_LB", "[lb_av]"),
]


@pytest.mark.parametrize(("code", "refid", "kind"), METRICS)
def test_a_metric_is_found_by_number_by_refid_or_both(code: int, refid: str, kind: str) -> None:
    by_both = mdc.metric(str(code), refid, "MDC")
    by_number = mdc.metric(str(code))
    by_refid = mdc.metric("", refid, "MDC")

    assert by_both is not None
    assert (by_both.type, by_both.code, by_both.refid) == (kind, code, refid)
    assert by_number == by_both == by_refid


@pytest.mark.parametrize(("code", "refid", "kind"), METRICS)
def test_every_metric_is_a_measurement_of_a_catalogue_type(
    code: int, refid: str, kind: str
) -> None:
    assert mdc.partition(code) == 2
    assert kind in CATALOGUE


def test_the_table_has_every_row_once() -> None:
    assert sorted((m.code, m.refid, m.type) for m in mdc.METRICS) == sorted(METRICS)


@pytest.mark.parametrize(("code", "refid"), NOT_STORED)
def test_metrics_we_do_not_store_are_not_found(code: int, refid: str) -> None:
    assert mdc.metric(str(code), refid, "MDC") is None


def test_a_number_under_another_coding_system_is_not_read_as_mdc() -> None:
    assert mdc.metric("150456", "SpO2", "99MNDRY") is None
    assert mdc.metric("150456", "MDC_PULS_OXIM_SAT_O2", "99MNDRY") is not None


def test_philips_mdil_hex_codes_are_mdc_codes() -> None:
    spo2 = mdc.metric("0002-4bb8", "SpO2", "MDIL")
    heart_rate = mdc.metric("0002-4182", "HR", "MDIL")

    assert spo2 is not None and spo2.code == 150456
    assert heart_rate is not None and heart_rate.refid == "MDC_ECG_HEART_RATE"
    assert mdc.ucum("0004-0f20", "mmHg", "MDIL") == "mm[Hg]"


def test_the_ecg_heart_rate_outranks_every_pulse_rate() -> None:
    ranks = {m.refid: m.rank for m in mdc.METRICS if m.type == "heart_rate"}

    assert ranks.pop("MDC_ECG_HEART_RATE") < min(ranks.values())


@pytest.mark.parametrize(("code", "refid", "unit"), UNITS)
def test_a_unit_is_found_by_number_by_refid_or_both(code: str, refid: str, unit: str) -> None:
    assert mdc.ucum(code, refid, "MDC") == unit
    assert mdc.ucum(code) == unit
    assert mdc.ucum("", refid, "MDC") == unit
    assert mdc.partition(int(code)) == 4


@pytest.mark.parametrize(
    ("written", "unit"),
    [
        (("mm[Hg]", "mm[Hg]", "UCUM"), "mm[Hg]"),
        (("{beat}/min", "{beat}/min", "UCUM"), "/min"),
        (("%", "", ""), "%"),
        (("", "/min", "MDC"), "/min"),
        (("Cel", "", "UCUM"), "Cel"),
        (("[degF]", "", "UCUM"), "[degF]"),
        (("mg/dL", "", "UCUM"), "mg/dL"),
        (("bpm", "", ""), "/min"),
    ],
)
def test_a_unit_is_found_as_ucum_or_bare_text(written: tuple[str, str, str], unit: str) -> None:
    assert mdc.ucum(*written) == unit


@pytest.mark.parametrize("written", [("266017", "", "MDC"), ("MMHG", "", ""), ("", "", "")])
def test_an_unknown_unit_is_not_guessed(written: tuple[str, str, str]) -> None:
    assert mdc.ucum(*written) is None


def test_every_unit_is_one_the_catalogue_converts_for_some_type() -> None:
    convertible = {u for code in CATALOGUE for u in accepted_units(code)}

    assert {ucum for _, ucum in mdc.UNITS.values()} <= convertible


@pytest.mark.parametrize(
    ("code", "text", "device"),
    [
        ("69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", True),
        ("70686", "", True),
        ("528391", "MDC_DEV_SPEC_PROFILE_BP", True),
        ("150456", "MDC_PULS_OXIM_SAT_O2", False),
    ],
)
def test_containment_rows_are_told_from_metrics(code: str, text: str, device: bool) -> None:
    assert mdc.is_device(code, text) is device
