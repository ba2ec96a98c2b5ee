"""The catalogue of measurement types the data-quality gate accepts.

Ranges are what a living patient can physically present, not normal ranges: a heart rate of 0
(asystole) or an SpO2 of 40 % are exactly the readings that must get through to raise alarms.
Anything outside is a sensor or transmission fault.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeasurementType:
    """One kind of measurement, with its unit (UCUM), codes and possible range."""

    code: str
    display: str
    unit: str
    loinc: str
    mdc: str
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
    )
}
