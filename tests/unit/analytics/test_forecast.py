"""The vital-sign forecast: trend, noise, irregular readings, bounds, crossings and the baseline."""

from __future__ import annotations

import datetime as dt
import random
import warnings
from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
import pytest
from bench.forecast import START, VITALS, deterioration, simulate_vital
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from medcloud.analytics import forecast as module
from medcloud.analytics.forecast import (
    Forecast,
    ForecastPoint,
    NotEnoughData,
    first_crossing,
    forecast,
    last_value_forecast,
)

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def every_minute(count: int) -> list[dt.datetime]:
    return [NOW - (count - 1 - index) * MINUTE for index in range(count)]


def noisy(count: int, centre: float, spread: float, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(value) for value in rng.normal(centre, spread, count)]


def test_a_linear_trend_is_extrapolated() -> None:
    rng = np.random.default_rng(3)
    values = 60 + 0.2 * np.arange(180) + rng.normal(0, 0.3, 180)
    result = forecast(every_minute(180), list(values))
    assert len(result.points) == 30
    assert result.points[0].at == NOW + MINUTE
    assert result.points[-1].at == NOW + 30 * MINUTE
    line = {index: 60 + 0.2 * (179 + index) for index in (1, 10, 30)}
    # A damped trend falls a little behind a line that never bends.
    assert result.points[0].mean == pytest.approx(line[1], abs=0.5)
    assert result.points[9].mean == pytest.approx(line[10], abs=0.8)
    assert result.points[29].mean == pytest.approx(line[30], abs=2.0)
    assert result.method == "ets-damped-additive"


def test_a_flat_noisy_series_is_forecast_near_its_mean_inside_a_fitting_interval() -> None:
    result = forecast(every_minute(180), noisy(180, 75, 2))
    future = noisy(30, 75, 2, seed=2)
    assert all(abs(point.mean - 75) < 1 for point in result.points)
    inside = sum(p.lower <= v <= p.upper for p, v in zip(result.points, future, strict=True))
    assert inside >= 27
    assert all(p.upper - p.lower < 6 * 2 for p in result.points)
    assert result.level == 0.95


def test_a_narrower_level_gives_a_narrower_interval() -> None:
    times, values = every_minute(180), noisy(180, 75, 2)
    wide, narrow = forecast(times, values), forecast(times, values, level=0.5)
    assert narrow.points[0].upper - narrow.points[0].lower < (
        wide.points[0].upper - wide.points[0].lower
    )


def test_irregular_and_unsorted_readings_are_bucketed_by_time() -> None:
    rng = random.Random(5)
    # A monitor about every second for three hours, in no particular order.
    seconds = sorted(rng.uniform(0, 3 * 3600) for _ in range(3000)) + [3 * 3600]
    times = [NOW - dt.timedelta(hours=3) + dt.timedelta(seconds=s) for s in seconds]
    values = [90 + 0.05 * s / 60 + rng.gauss(0, 1) for s in seconds]
    order = list(range(len(times)))
    rng.shuffle(order)
    shuffled = forecast([times[i] for i in order], [values[i] for i in order])
    assert shuffled == forecast(times, values)
    assert shuffled.points[0].at == NOW + MINUTE
    assert shuffled.points[-1].mean == pytest.approx(90 + 0.05 * 210, abs=1.5)


def test_a_cuff_every_15_minutes_is_forecast_at_the_requested_step() -> None:
    times = [NOW - index * dt.timedelta(minutes=15, seconds=3) for index in range(12)]
    values = noisy(12, 120, 4)
    result = forecast(times, values, horizon=dt.timedelta(minutes=30))
    assert len(result.points) == 30
    assert result.step == MINUTE
    assert all(abs(point.mean - 120) < 8 for point in result.points)


def test_readings_older_than_the_history_are_not_used() -> None:
    times = every_minute(300)
    values = [200.0] * 120 + noisy(180, 75, 2)
    result = forecast(times, values, history=dt.timedelta(hours=3))
    assert all(abs(point.mean - 75) < 1 for point in result.points)


def test_readings_that_are_not_numbers_are_ignored() -> None:
    values = noisy(180, 75, 2)
    values[50] = values[120] = float("nan")
    assert all(abs(point.mean - 75) < 1 for point in forecast(every_minute(180), values).points)


@pytest.mark.parametrize(
    ("times", "needed"),
    [
        pytest.param(every_minute(5), "at least 10", id="five minutes"),
        pytest.param([NOW - dt.timedelta(seconds=s) for s in range(200)], "at least 10", id="span"),
        pytest.param([], "at least 10", id="none"),
    ],
)
def test_too_few_readings_raise_not_enough_data(times: list[dt.datetime], needed: str) -> None:
    with pytest.raises(NotEnoughData, match=needed):
        forecast(times, [80.0] * len(times))


def test_only_the_readings_after_a_long_gap_count() -> None:
    times = [NOW - dt.timedelta(hours=2) - index * MINUTE for index in range(60)]
    times += [NOW - index * MINUTE for index in range(5)]
    with pytest.raises(NotEnoughData, match="got 5"):
        forecast(times, [80.0] * len(times))


def test_not_enough_data_is_a_value_error() -> None:
    assert issubclass(NotEnoughData, ValueError)


@pytest.mark.parametrize(
    ("times", "values", "options"),
    [
        pytest.param(every_minute(20), [1.0] * 19, {}, id="lengths differ"),
        pytest.param(
            [t.replace(tzinfo=None) for t in every_minute(20)], [1.0] * 20, {}, id="naive"
        ),
        pytest.param(every_minute(20), ["high"] * 20, {}, id="not numbers"),
        pytest.param(every_minute(20), [1.0] * 20, {"level": 1.0}, id="level"),
        pytest.param(every_minute(20), [1.0] * 20, {"step": dt.timedelta(0)}, id="step"),
        pytest.param(every_minute(20), [1.0] * 20, {"horizon": dt.timedelta(0)}, id="horizon"),
        pytest.param(every_minute(20), [1.0] * 20, {"history": -MINUTE}, id="history"),
        pytest.param(every_minute(20), [1.0] * 20, {"minimum": 5, "maximum": 1}, id="bounds"),
    ],
)
def test_bad_input_raises_value_error(
    times: list[dt.datetime], values: list[object], options: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        forecast(times, values, **options)  # type: ignore[arg-type]


def test_the_forecast_is_clamped_to_the_possible_range() -> None:
    rising = [90 + 0.05 * index + value for index, value in enumerate(noisy(180, 0, 0.3))]
    top = forecast(every_minute(180), rising, maximum=100)
    assert max(p.mean for p in top.points) > 99
    assert all(p.lower <= p.mean <= p.upper <= 100 for p in top.points)
    falling = [15 - 0.08 * index + value for index, value in enumerate(noisy(180, 0, 0.3))]
    bottom = forecast(every_minute(180), falling, minimum=0)
    assert all(0 <= p.lower <= p.mean <= p.upper for p in bottom.points)
    assert min(p.lower for p in bottom.points) == 0


def test_a_constant_series_is_forecast_as_it_is() -> None:
    result = forecast(every_minute(60), [98.0] * 60)
    assert {(p.mean, p.lower, p.upper) for p in result.points} == {(98.0, 98.0, 98.0)}


def test_a_failing_fit_falls_back_to_a_simpler_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_trend(*args: object, **kwargs: object) -> object:
        if kwargs.get("trend"):
            raise ValueError("the optimiser gave up")
        return ETSModel(*args, **kwargs)

    monkeypatch.setattr(module, "ETSModel", no_trend)
    times, values = every_minute(120), noisy(120, 75, 2)
    assert forecast(times, values).method == "ets-simple"

    def nothing(*args: object, **kwargs: object) -> object:
        raise np.linalg.LinAlgError("singular")

    monkeypatch.setattr(module, "ETSModel", nothing)
    fallback = forecast(times, values)
    assert fallback.method == "naive"
    assert fallback.points[0].mean == values[-1]
    assert fallback.points[-1].upper - fallback.points[-1].lower > (
        fallback.points[0].upper - fallback.points[0].lower
    )


def test_no_warning_escapes_a_forecast() -> None:
    series: Sequence[list[float]] = (
        [98.0] * 59 + [97.0],
        [float(value) for value in np.round(noisy(180, 97, 0.5))],
        list(60 + 0.2 * np.arange(180)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for values in series:
            forecast(every_minute(len(values)), values)


def crossing_forecast(means: Sequence[float]) -> Forecast:
    points = tuple(
        ForecastPoint(NOW + (index + 1) * MINUTE, mean, mean - 1, mean + 1)
        for index, mean in enumerate(means)
    )
    return Forecast(points=points, step=MINUTE, level=0.95, method="test")


def test_first_crossing_finds_the_first_mean_beyond_a_threshold() -> None:
    rising = crossing_forecast([110, 118, 121, 125, 119])
    crossing = first_crossing(rising, low=None, high=120)
    assert crossing is not None
    assert crossing.at == NOW + 3 * MINUTE
    falling = crossing_forecast([93, 91, 90, 89])
    crossing = first_crossing(falling, low=90, high=None)
    assert crossing is not None
    assert crossing.mean == 89


def test_first_crossing_is_none_when_the_mean_stays_within() -> None:
    steady = crossing_forecast([110, 119.5, 120, 100])
    assert first_crossing(steady, low=100, high=120) is None
    assert first_crossing(steady, low=None, high=None) is None


def test_the_last_value_forecast_repeats_the_newest_reading() -> None:
    times = every_minute(3)
    result = last_value_forecast(
        [times[2], times[0], times[1]], [72.0, 70.0, 71.0], horizon=dt.timedelta(minutes=5)
    )
    assert [p.mean for p in result.points] == [72.0] * 5
    assert result.points[0].at == NOW + MINUTE
    assert result.method == "last-value"


def test_the_forecast_beats_the_last_value_on_a_deteriorating_patient() -> None:
    rng = np.random.default_rng(7)
    minutes = 480
    profile = deterioration(minutes=minutes, onset=200, duration=120)
    errors: dict[str, list[float]] = {"forecast": [], "last value": []}
    for vital in VITALS:
        if vital.code not in {"spo2", "respiratory_rate"}:
            continue
        times, values = simulate_vital(rng, vital, minutes=minutes, profile=profile)
        for cut in range(180, minutes - 30 + 1, 10):
            known = bisect_right(times, START + cut * MINUTE)
            predicted = forecast(times[:known], values[:known])
            baseline = last_value_forecast(times[:known], values[:known])
            for at, actual in zip(times[known:], values[known:], strict=True):
                index = round((at - times[known - 1]) / MINUTE) - 1
                if 0 <= index < 30:
                    errors["forecast"].append(abs(predicted.points[index].mean - actual))
                    errors["last value"].append(abs(baseline.points[index].mean - actual))
    assert np.mean(errors["forecast"]) < 0.97 * np.mean(errors["last value"])
