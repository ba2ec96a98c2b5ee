"""The catalogue of measurement types: what the data-quality gate accepts and alarm rules name.

It is shared vocabulary (ingest gates readings with it, analytics validates rules against it,
interoperability maps codes to it), so it lives in the kernel as data, tested as a table.

Ranges are what a living patient can physically present, not normal ranges: a heart rate of 0
(asystole) or an SpO2 of 40 % are exactly the readings that must get through to raise alarms.
Anything outside is a sensor or transmission fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class MeasurementType:
    """One kind of measurement, with its unit (UCUM), codes and possible range."""

    code: str
    display: str
    unit: str
    loinc: str
    mdc: str | None
    """The IEEE 11073 term; None for what has none (charted observations)."""
    minimum: float
    maximum: float


CATALOGUE: dict[str, MeasurementType] = {
    t.code: t
    for t in (
        MeasurementType("heart_rate", "Heart rate", "/min", "8867-4", "MDC_PULS_RATE", 0, 350),
        MeasurementType(
            "spo2", "Oxygen saturation", "%", "59408-5", "MDC_PULS_OXIM_SAT_O2", 0, 100
        ),
        MeasurementType(
            "respiratory_rate", "Respiratory rate", "/min", "9279-1", "MDC_RESP_RATE", 0, 120
        ),
        MeasurementType(
            "temperature", "Body temperature", "Cel", "8310-5", "MDC_TEMP_BODY", 10, 46
        ),
        MeasurementType(
            "systolic_bp",
            "Systolic blood pressure",
            "mm[Hg]",
            "8480-6",
            "MDC_PRESS_BLD_NONINV_SYS",
            20,
            300,
        ),
        MeasurementType(
            "diastolic_bp",
            "Diastolic blood pressure",
            "mm[Hg]",
            "8462-4",
            "MDC_PRESS_BLD_NONINV_DIA",
            10,
            250,
        ),
        MeasurementType(
            "mean_bp",
            "Mean blood pressure",
            "mm[Hg]",
            "8478-0",
            "MDC_PRESS_BLD_NONINV_MEAN",
            15,
            270,
        ),
        MeasurementType(
            "glucose",
            "Blood glucose",
            "mmol/L",
            "15074-8",
            "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD",
            0.5,
            60,
        ),
        MeasurementType("weight", "Body weight", "kg", "29463-7", "MDC_MASS_BODY_ACTUAL", 0.2, 650),
        # Charted by nurses or sent by ventilators and flowmeters, for NEWS2: consciousness as
        # its ACVPU code (0 alert, 1 new confusion, 2 voice, 3 pain, 4 unresponsive), oxygen as
        # the flow delivered (0: breathing air). Neither has an IEEE 11073 term of its own.
        MeasurementType(
            "consciousness", "Level of consciousness (ACVPU)", "{ACVPU}", "67775-7", None, 0, 4
        ),
        MeasurementType("oxygen_flow", "Inhaled oxygen flow rate", "L/min", "3151-8", None, 0, 70),
    )
}

UNITS = {code: kind.unit for code, kind in CATALOGUE.items()}
"""The unit every measurement type is stored in."""


# Units devices send that differ from the catalogue's, by (type, UCUM unit): each converts a value
# into the catalogue unit, which is the only unit stored. Glucose: 1 mmol/L = 18.016 mg/dL
# (molar mass 180.16 g/mol); pressure: 1 kPa = 7.50062 mmHg.
_MMHG_PER_KPA = 7.500_616_8
_BP = ("systolic_bp", "diastolic_bp", "mean_bp")
CONVERSIONS: dict[tuple[str, str], Callable[[float], float]] = {
    ("temperature", "[degF]"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("temperature", "K"): lambda v: v - 273.15,
    ("glucose", "mg/dL"): lambda v: v / 18.016,
    ("weight", "[lb_av]"): lambda v: v * 0.453_592_37,
    ("weight", "g"): lambda v: v / 1000.0,
    **{(code, "kPa"): (lambda v: v * _MMHG_PER_KPA) for code in _BP},
}


def to_catalogue_unit(code: str, value: float, unit: str | None) -> float | None:
    """Return `value` in the catalogue unit of `code`; None when `unit` is not one we convert."""
    kind = CATALOGUE[code]
    if unit is None or unit == kind.unit:
        return value
    convert = CONVERSIONS.get((code, unit))
    return None if convert is None else convert(value)


def accepted_units(code: str) -> list[str]:
    """Name every unit `code` may be sent in, the catalogue's first."""
    return [CATALOGUE[code].unit, *(u for c, u in CONVERSIONS if c == code)]
