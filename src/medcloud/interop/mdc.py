"""IEEE 11073-10101 (MDC) code tables: which device metrics medcloud stores, and in which units.

Bedside monitors and gateways name a metric in OBX-3 by its 32-bit MDC code (partition << 16 |
term code), its reference id (REFID), or both: `150456^MDC_PULS_OXIM_SAT_O2^MDC`,
`^MDC_PULS_OXIM_SAT_O2^MDC` or `150456`. Philips devices write the same code as hexadecimal
`partition-term` under the MDIL coding system (`0002-4bb8^SpO2^MDIL` is 2 << 16 | 0x4BB8). Units in
OBX-6 come the same three ways, or as UCUM (`mm[Hg]^mm[Hg]^UCUM`).

Each number is taken from a published table, not derived: the HL7 Denmark core value set of IEEE
11073 basic observations, the 11073-20601 nomenclature as the HL7 PHD tooling lists it (term code
plus partition << 16), and the vendor examples the conformance messages come from (GE B40/B20 HL7
reference manual, Mindray VS-900 and eGateway, Philips Efficia CM data export guide).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Partition 1 of the 32-bit code holds the device objects (MDS, VMD, channel), which carry no
# value; measurements are in partition 2 (SCADA) and units in partition 4 (dimensions).
_PARTITION_OBJECT = 1


@dataclass(frozen=True)
class Metric:
    """One MDC measurement term and the catalogue type it is stored as."""

    code: int
    refid: str
    type: str
    rank: int
    """Lower wins when two metrics give the same type at the same instant from one device."""


# Rank 0 is the preferred source of a type, higher ranks are fallbacks.
#
# Heart rate: the ECG rate counts the heart's electrical beats and is the monitor's primary heart
# rate; pulse rates (oximeter, cuff, arterial line) count peripheral pulses, which lag, drop out
# with poor perfusion or motion, and miss beats that do not perfuse (pulse deficit in atrial
# fibrillation). So when a monitor reports both at one instant, the ECG rate is the heart rate.
#
# Respiratory rate: airway flow and capnography count real breaths; transthoracic impedance (the
# ECG leads) and the generic term are next; the rate derived from the oximeter plethysmogram last.
#
# Temperature: the body sites clinically read as body temperature (core, tympanic, rectal, oral,
# ear, axillary, gastro-intestinal) and MDC_TEMP, the site-unspecified term physiological monitors
# (GE B40, Mindray) use for their patient probes. Skin, finger, toe, blood and room temperatures
# are not body temperature (peripheral sites read degrees below core) and are not stored.
#
# Blood pressure: the cuff (non-invasive) terms, including MDC_PRESS_CUFF_* that Mindray monitors
# send for NIBP. Invasive (arterial line) pressures are another site and can coexist with a cuff
# reading at the same instant; they are not the catalogue's types.
#
# Glucose: blood and plasma samples only; control-solution readings are meter quality checks,
# interstitial (CGM) readings lag blood glucose, and neither is a blood glucose.
METRICS: tuple[Metric, ...] = (
    Metric(150456, "MDC_PULS_OXIM_SAT_O2", "spo2", 0),
    Metric(147842, "MDC_ECG_HEART_RATE", "heart_rate", 0),
    Metric(149514, "MDC_PULS_RATE", "heart_rate", 1),
    Metric(149530, "MDC_PULS_OXIM_PULS_RATE", "heart_rate", 1),
    Metric(149546, "MDC_PULS_RATE_NON_INV", "heart_rate", 1),
    Metric(149522, "MDC_BLD_PULS_RATE_INV", "heart_rate", 1),
    Metric(151570, "MDC_AWAY_RESP_RATE", "respiratory_rate", 0),
    Metric(151594, "MDC_CO2_RESP_RATE", "respiratory_rate", 0),
    Metric(151562, "MDC_RESP_RATE", "respiratory_rate", 1),
    Metric(151578, "MDC_TTHOR_RESP_RATE", "respiratory_rate", 1),
    Metric(151658, "MDC_PULS_OXIM_PLETH_RESP_RATE", "respiratory_rate", 2),
    Metric(150021, "MDC_PRESS_BLD_NONINV_SYS", "systolic_bp", 0),
    Metric(150022, "MDC_PRESS_BLD_NONINV_DIA", "diastolic_bp", 0),
    Metric(150023, "MDC_PRESS_BLD_NONINV_MEAN", "mean_bp", 0),
    Metric(150301, "MDC_PRESS_CUFF_SYS", "systolic_bp", 0),
    Metric(150302, "MDC_PRESS_CUFF_DIA", "diastolic_bp", 0),
    Metric(150303, "MDC_PRESS_CUFF_MEAN", "mean_bp", 0),
    Metric(150364, "MDC_TEMP_BODY", "temperature", 0),
    Metric(150368, "MDC_TEMP_CORE", "temperature", 0),
    Metric(150392, "MDC_TEMP_TYMP", "temperature", 0),
    Metric(188420, "MDC_TEMP_RECT", "temperature", 0),
    Metric(188424, "MDC_TEMP_ORAL", "temperature", 0),
    Metric(188428, "MDC_TEMP_EAR", "temperature", 0),
    Metric(188452, "MDC_TEMP_AXILLA", "temperature", 0),
    Metric(188456, "MDC_TEMP_GIT", "temperature", 0),
    # The axillary term as Mindray VS-900 monitors send it, beside the PHD thermometer's.
    Metric(188496, "MDC_TEMP_AXIL", "temperature", 0),
    Metric(150344, "MDC_TEMP", "temperature", 1),
    Metric(160184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", "glucose", 0),
    Metric(160188, "MDC_CONC_GLU_CAPILLARY_PLASMA", "glucose", 0),
    Metric(160192, "MDC_CONC_GLU_VENOUS_WHOLEBLOOD", "glucose", 0),
    Metric(160196, "MDC_CONC_GLU_VENOUS_PLASMA", "glucose", 0),
    Metric(160200, "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD", "glucose", 0),
    Metric(160204, "MDC_CONC_GLU_ARTERIAL_PLASMA", "glucose", 0),
    Metric(188736, "MDC_MASS_BODY_ACTUAL", "weight", 0),
)

CODES: dict[str, int] = {m.refid: m.code for m in METRICS} | {
    # The NIBP compound: what a blood pressure panel is coded as (HL7 DK Core
    # dk-core-IEEEBasicObservation lists it beside its systolic, diastolic and mean parts).
    "MDC_PRESS_BLD_NONINV": 150020,
}
"""The numeric code of every REFID here, for writing codes as well as reading them (FHIR)."""

_BY_CODE = {m.code: m for m in METRICS}
_BY_REFID = {m.refid: m for m in METRICS}

# MDC dimension codes (partition 4) and the UCUM unit each means.
UNITS: dict[int, tuple[str, str]] = {
    262688: ("MDC_DIM_PERCENT", "%"),
    264864: ("MDC_DIM_BEAT_PER_MIN", "/min"),
    264928: ("MDC_DIM_RESP_PER_MIN", "/min"),
    266016: ("MDC_DIM_MMHG", "mm[Hg]"),
    265987: ("MDC_DIM_KILO_PASCAL", "kPa"),
    268192: ("MDC_DIM_DEGC", "Cel"),
    266560: ("MDC_DIM_FAHR", "[degF]"),
    266528: ("MDC_DIM_KELVIN", "K"),
    266866: ("MDC_DIM_MILLI_MOLE_PER_L", "mmol/L"),
    264274: ("MDC_DIM_MILLI_G_PER_DL", "mg/dL"),
    263875: ("MDC_DIM_KILO_G", "kg"),
    263872: ("MDC_DIM_G", "g"),
    263904: ("MDC_DIM_LB", "[lb_av]"),
}

_UNIT_BY_REFID = dict(UNITS.values())

# UCUM codes as senders write them, with the annotations ({beat}/min) and the common non-UCUM
# spellings gateways put in OBX-6 text. Keys are compared case-sensitively where UCUM is
# (mm[Hg], Cel), so "cel" or "MMHG" alone are not guessed at.
_UCUM: dict[str, str] = {
    "%": "%",
    "/min": "/min",
    "{beat}/min": "/min",
    "{beats}/min": "/min",
    "{breath}/min": "/min",
    "{breaths}/min": "/min",
    "{resp}/min": "/min",
    "bpm": "/min",
    "rpm": "/min",
    "mm[Hg]": "mm[Hg]",
    "mmHg": "mm[Hg]",
    "kPa": "kPa",
    "Cel": "Cel",
    "degC": "Cel",
    "[degF]": "[degF]",
    "degF": "[degF]",
    "K": "K",
    "mmol/L": "mmol/L",
    "mg/dL": "mg/dL",
    "kg": "kg",
    "g": "g",
    "[lb_av]": "[lb_av]",
    "lb": "[lb_av]",
}

_MDIL = re.compile(r"([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})")
_MDC_SYSTEMS = frozenset({"", "MDC", "MDIL"})


def code_of(identifier: str) -> int | None:
    """Return the 32-bit MDC code written as a decimal number or as MDIL `pppp-tttt` hex."""
    if identifier.isascii() and identifier.isdigit() and len(identifier) <= 10:
        return int(identifier)
    hexadecimal = _MDIL.fullmatch(identifier)
    if hexadecimal:
        return int(hexadecimal[1], 16) << 16 | int(hexadecimal[2], 16)
    return None


def metric(identifier: str, text: str = "", system: str = "") -> Metric | None:
    """Find the metric an OBX-3 names by its number or REFID; None for one not stored."""
    if system.upper() in _MDC_SYSTEMS:
        number = code_of(identifier)
        if number is not None and number in _BY_CODE:
            return _BY_CODE[number]
    return _BY_REFID.get(text) or _BY_REFID.get(identifier)


def is_device(identifier: str, text: str = "") -> bool:
    """Tell whether an OBX-3 names a device (MDS, VMD, channel) rather than a metric."""
    number = code_of(identifier)
    if number is not None and number >> 16 == _PARTITION_OBJECT:
        return True
    return text.startswith("MDC_DEV_") or identifier.startswith("MDC_DEV_")


def ucum(identifier: str, text: str = "", system: str = "") -> str | None:
    """Return the UCUM unit an OBX-6 names; None when it is not one we know."""
    if system.upper() in _MDC_SYSTEMS:
        number = code_of(identifier)
        if number is not None and number in UNITS:
            return UNITS[number][1]
    for candidate in (identifier, text):
        if candidate in _UNIT_BY_REFID:
            return _UNIT_BY_REFID[candidate]
        if candidate in _UCUM:
            return _UCUM[candidate]
    return None


def partition(code: int) -> int:
    """Return the nomenclature partition of a 32-bit MDC code."""
    return code >> 16
