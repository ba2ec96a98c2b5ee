"""The data-quality gate, over the whole input space."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from medcloud.config import Settings
from medcloud.ingest.schemas import ReadingIn
from medcloud.ingest.service import check_readings
from medcloud.platform.catalogue import CATALOGUE

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
SETTINGS = Settings()

codes = st.sampled_from(sorted(CATALOGUE))
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
offsets = st.floats(min_value=-86_400 * 30, max_value=3_600)


@given(
    st.lists(
        st.tuples(offsets, st.dictionaries(codes, values, min_size=1)), min_size=1, max_size=20
    )
)
def test_the_gate_refuses_exactly_what_is_impossible(
    raw: list[tuple[float, dict[str, float]]],
) -> None:
    readings = [
        ReadingIn(timestamp=NOW + dt.timedelta(seconds=offset), measurements=measurements)
        for offset, measurements in raw
    ]
    errors = check_readings(readings, now=NOW, settings=SETTINGS, batch=True)
    expected = set()
    for index, (offset, measurements) in enumerate(raw):
        if offset > SETTINGS.max_future_skew_seconds:
            expected.add(f"readings.{index}.timestamp")
        for code, value in measurements.items():
            kind = CATALOGUE[code]
            if not kind.minimum <= value <= kind.maximum:
                expected.add(f"readings.{index}.measurements.{code}")
    assert {error.field for error in errors} == expected


@given(st.text(min_size=1, max_size=40).filter(lambda s: s not in CATALOGUE))
def test_unknown_measurement_types_are_named(code: str) -> None:
    reading = ReadingIn(timestamp=NOW, measurements={code: 1.0})
    errors = check_readings([reading], now=NOW, settings=SETTINGS, batch=False)
    assert [(e.field, e.message) for e in errors] == [
        (f"measurements.{code}", "unknown measurement type")
    ]


def test_asystole_and_deep_desaturation_pass_the_gate() -> None:
    reading = ReadingIn(timestamp=NOW, measurements={"heart_rate": 0, "spo2": 40})
    assert check_readings([reading], now=NOW, settings=SETTINGS, batch=False) == []


def test_every_type_has_a_unit_and_codes() -> None:
    for kind in CATALOGUE.values():
        assert kind.unit and kind.loinc and (kind.mdc is None or kind.mdc.startswith("MDC_"))
        assert kind.minimum < kind.maximum


def test_units_devices_differ_in_are_converted_and_unknown_ones_named() -> None:
    from medcloud.ingest.schemas import UnitValue
    from medcloud.ingest.service import to_rows
    from medcloud.platform.security import DevicePrincipal

    reading = ReadingIn(
        timestamp=NOW,
        measurements={
            "temperature": UnitValue(98.6, "[degF]"),
            "glucose": UnitValue(180.16, "mg/dL"),
            "mean_bp": UnitValue(12, "kPa"),
        },
    )
    assert check_readings([reading], now=NOW, settings=SETTINGS, batch=False) == []
    device = DevicePrincipal("d", "o", None)
    values = {
        r.type: round(r.value, 2) for r in to_rows([reading], device, now=NOW, settings=SETTINGS)
    }
    assert values == {"temperature": 37.0, "glucose": 10.0, "mean_bp": 90.01}
    odd = ReadingIn(timestamp=NOW, measurements={"glucose": UnitValue(5, "g/L")})
    [error] = check_readings([odd], now=NOW, settings=SETTINGS, batch=False)
    assert error.field == "measurements.glucose" and "'g/L'" in error.message


def test_a_converted_value_is_checked_against_the_catalogue_range() -> None:
    from medcloud.ingest.schemas import UnitValue

    hot = ReadingIn(timestamp=NOW, measurements={"temperature": UnitValue(120, "[degF]")})
    [error] = check_readings([hot], now=NOW, settings=SETTINGS, batch=False)
    assert "possible range 10–46 Cel" in error.message
