"""Backtest the vital-sign forecast on simulated patients against the last-value baseline.

    .venv/bin/python -m bench.forecast --patients 40 --seed 7

Each simulated patient has several hours of vitals: a resting value per vital, physiological
variation that wanders and returns to it (AR(1) per minute), measurement noise, rounding to the
monitor's resolution and, for a share of patients, a slow deterioration over about two hours
(heart and respiratory rate and temperature rising, SpO2 and blood pressure falling). Heart rate,
SpO2, respiratory rate and temperature come every minute, systolic blood pressure from a cuff
every 15 minutes. At cut points every 20 minutes, each vital is forecast from the readings up to
the cut and compared with the readings that follow within the horizon.

Prints one JSON object: the mean absolute error of the forecast and of the last value over all
compared readings, the improvement (1 - forecast MAE / last-value MAE), the share of readings
inside the prediction interval, the mean time per forecast, and the same errors per vital.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from medcloud.analytics.forecast import Forecast, forecast, last_value_forecast
from medcloud.platform.catalogue import CATALOGUE

Array = npt.NDArray[np.float64]
Series = tuple[list[dt.datetime], list[float]]

START = dt.datetime(2025, 1, 6, 8, 0, tzinfo=dt.UTC)
CUT_EVERY_MINUTES = 20
DETERIORATING_SHARE = 0.35


@dataclass(frozen=True)
class Vital:
    """How one vital sign behaves in the simulated population."""

    code: str
    resting: float
    """Population mean of a patient's resting value."""
    between: float
    """Standard deviation of the resting value between patients."""
    wander: float
    """Standard deviation of the physiological variation around the resting value."""
    persistence: float
    """AR(1) coefficient of that variation, per minute."""
    noise: float
    """Standard deviation of the measurement noise."""
    decimals: int
    """Resolution the device reports at."""
    change: tuple[float, float]
    """Range of the total change over a deterioration."""
    every: int
    """Minutes between readings."""


VITALS = (
    Vital("heart_rate", 78, 10, 4.0, 0.95, 2.0, 0, (20, 40), 1),
    Vital("spo2", 97, 1.0, 0.8, 0.90, 0.6, 0, (-9, -4), 1),
    Vital("respiratory_rate", 16, 2.0, 1.5, 0.90, 1.2, 0, (6, 12), 1),
    Vital("temperature", 36.9, 0.3, 0.1, 0.99, 0.05, 1, (0.8, 1.8), 1),
    Vital("systolic_bp", 122, 12, 6.0, 0.97, 4.0, 0, (-35, -20), 15),
)


def simulate_vital(
    rng: np.random.Generator, vital: Vital, *, minutes: int, profile: Array | None
) -> Series:
    """Readings of one vital for `minutes`, with the given deterioration profile (0 to 1)."""
    steps = np.arange(minutes)
    innovation = vital.wander * np.sqrt(1 - vital.persistence**2)
    wander = np.empty(minutes)
    wander[0] = rng.normal(0, vital.wander)
    shocks = rng.normal(0, innovation, minutes)
    for minute in range(1, minutes):
        wander[minute] = vital.persistence * wander[minute - 1] + shocks[minute]
    level = rng.normal(vital.resting, vital.between) + wander
    if profile is not None:
        level = level + rng.uniform(*vital.change) * profile
    phase = int(rng.integers(vital.every))
    taken = steps[phase :: vital.every]
    measured = level[taken] + rng.normal(0, vital.noise, taken.size)
    bounds = CATALOGUE[vital.code]
    measured = np.clip(np.round(measured, vital.decimals), bounds.minimum, bounds.maximum)
    # Devices do not report on the exact second.
    jitter = rng.uniform(-5, 5, taken.size)
    times = [
        START + dt.timedelta(minutes=int(minute), seconds=float(late))
        for minute, late in zip(taken, jitter, strict=True)
    ]
    return times, [float(value) for value in measured]


def deterioration(*, minutes: int, onset: float, duration: float) -> Array:
    """Progress of a deterioration per minute: 0 before `onset`, easing in and out to 1."""
    progress: Array = np.clip((np.arange(minutes) - onset) / duration, 0.0, 1.0)
    eased: Array = progress * progress * (3 - 2 * progress)
    return eased


def simulate_patient(rng: np.random.Generator, *, minutes: int) -> dict[str, Series]:
    """All vitals of one patient; a share of patients deteriorate over about two hours."""
    profile = None
    if rng.random() < DETERIORATING_SHARE:
        onset = rng.uniform(60, minutes - 90)
        profile = deterioration(minutes=minutes, onset=onset, duration=rng.uniform(90, 150))
    return {
        vital.code: simulate_vital(rng, vital, minutes=minutes, profile=profile) for vital in VITALS
    }


@dataclass
class Tally:
    """Errors of the forecast and of the baseline on the same readings."""

    forecast_errors: list[float] = field(default_factory=list)
    last_value_errors: list[float] = field(default_factory=list)
    inside: int = 0
    forecasts: int = 0
    seconds: float = 0.0

    def add(self, prediction: Forecast, baseline: Forecast, future: Series) -> None:
        """Compare both forecasts with the readings they cover."""
        newest = prediction.points[0].at - prediction.step
        step = prediction.step.total_seconds()
        for at, actual in zip(*future, strict=True):
            index = round((at - newest).total_seconds() / step) - 1
            if not 0 <= index < len(prediction.points):
                continue
            point = prediction.points[index]
            self.forecast_errors.append(abs(point.mean - actual))
            self.last_value_errors.append(abs(baseline.points[index].mean - actual))
            self.inside += point.lower <= actual <= point.upper

    def summary(self) -> dict[str, Any]:
        """Mean absolute errors, improvement and interval coverage."""
        mae = float(np.mean(self.forecast_errors))
        mae_last = float(np.mean(self.last_value_errors))
        return {
            "mae_forecast": round(mae, 3),
            "mae_last_value": round(mae_last, 3),
            "improvement": round(1 - mae / mae_last, 3),
            "interval_coverage": round(self.inside / len(self.forecast_errors), 3),
        }


def backtest(
    *, patients: int, seed: int, horizon: dt.timedelta, history: dt.timedelta
) -> dict[str, Tally]:
    """Forecast every vital of every simulated patient at every cut point; tally per vital."""
    rng = np.random.default_rng(seed)
    history_minutes = int(history.total_seconds() // 60)
    horizon_minutes = int(horizon.total_seconds() // 60)
    minutes = history_minutes + 180
    cuts = range(history_minutes, minutes - horizon_minutes + 1, CUT_EVERY_MINUTES)
    tallies = {vital.code: Tally() for vital in VITALS}
    for _ in range(patients):
        for code, (times, values) in simulate_patient(rng, minutes=minutes).items():
            bounds = CATALOGUE[code]
            tally = tallies[code]
            for cut in cuts:
                known = bisect_right(times, START + dt.timedelta(minutes=cut))
                past = times[:known], values[:known]
                started = time.perf_counter()
                prediction = forecast(
                    *past,
                    horizon=horizon,
                    history=history,
                    minimum=bounds.minimum,
                    maximum=bounds.maximum,
                )
                tally.seconds += time.perf_counter() - started
                tally.forecasts += 1
                baseline = last_value_forecast(*past, horizon=horizon)
                tally.add(prediction, baseline, (times[known:], values[known:]))
    return tallies


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the backtest and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--horizon-minutes", type=int, default=30)
    parser.add_argument("--history-hours", type=float, default=3)
    args = parser.parse_args(argv)
    if args.patients < 1 or args.horizon_minutes < 1 or args.history_hours <= 0:
        parser.error("--patients, --horizon-minutes and --history-hours must be positive")
    tallies = backtest(
        patients=args.patients,
        seed=args.seed,
        horizon=dt.timedelta(minutes=args.horizon_minutes),
        history=dt.timedelta(hours=args.history_hours),
    )
    total = Tally()
    for tally in tallies.values():
        total.forecast_errors += tally.forecast_errors
        total.last_value_errors += tally.last_value_errors
        total.inside += tally.inside
        total.forecasts += tally.forecasts
        total.seconds += tally.seconds
    result = {
        "patients": args.patients,
        "forecasts": total.forecasts,
        "horizon_minutes": args.horizon_minutes,
        **total.summary(),
        "seconds_per_forecast": round(total.seconds / total.forecasts, 4),
        "by_type": {code: tally.summary() for code, tally in tallies.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
