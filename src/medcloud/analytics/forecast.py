"""Short-horizon forecasts of one patient's vital sign, with a prediction interval. Pure: no I/O.

The readings of the last `history` are averaged into buckets `step` wide, centred on the newest
reading and on every `step` before it, and short runs of empty buckets are filled by linear
interpolation. Two exponential smoothing state-space models with additive errors are fitted:
ETS(A,Ad,N), whose damped trend follows a drift (a deteriorating patient) without extrapolating
it for ever, and ETS(A,N,N), simple exponential smoothing, which only filters out measurement
noise. The one with the lower AICc forecasts, and its own variance gives the prediction
interval. When readings are sparser than `step` (a blood-pressure cuff every 15 minutes), the
models run on buckets as wide as the usual spacing of the readings and the forecast is
interpolated to `step`, so that the fit sees measurements rather than interpolated lines.

A fit that fails, does not converge or yields non-finite numbers is discarded; if both are, the
forecast is the newest bucket with an interval that widens like a random walk's. Fits run one at
a time per process, with BLAS on a single thread while they do.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

Array = npt.NDArray[np.float64]

MIN_BUCKETS = 10
"""Buckets with readings that a forecast needs, in the span it fits on."""
MAX_GAP_BUCKETS = 10
"""Longest run of empty buckets that is interpolated; readings before a longer gap are unused."""
MAX_POINTS = 10_000
"""Most points one forecast returns."""

# Made after statsmodels is imported, so that it knows the BLAS libraries the fit uses.
_BLAS = ThreadpoolController()
_BLAS_LOCK = threading.Lock()

DAMPED = "ets-damped-additive"
SIMPLE = "ets-simple"
NAIVE = "naive"
LAST_VALUE = "last-value"


class NotEnoughData(ValueError):
    """Too few readings, or too short a span of them, to forecast from."""


@dataclass(frozen=True)
class ForecastPoint:
    """The forecast for one instant: the expected value and its prediction interval."""

    at: dt.datetime
    mean: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Forecast:
    """Forecast points `step` apart, starting one step after the newest reading."""

    points: tuple[ForecastPoint, ...]
    step: dt.timedelta
    level: float
    method: str


@dataclass(frozen=True)
class _Readings:
    """Finite readings of the window, as seconds before the newest one (0 is the newest)."""

    newest: dt.datetime
    ago: Array
    values: Array


def forecast(
    times: Sequence[dt.datetime],
    values: Sequence[float],
    *,
    horizon: dt.timedelta = dt.timedelta(minutes=30),
    step: dt.timedelta = dt.timedelta(minutes=1),
    history: dt.timedelta = dt.timedelta(hours=3),
    level: float = 0.95,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Forecast:
    """Forecast the next `horizon` of a vital sign from its readings of the last `history`."""
    count = _points(horizon, step)
    if history <= dt.timedelta(0):
        raise ValueError("history must be positive")
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    _check_bounds(minimum, maximum)
    readings = _readings(times, values, history, needed=f"at least {MIN_BUCKETS} readings")
    width = _fit_width(readings.ago, step)
    grid = _grid(readings, width)
    fit_steps = math.ceil(count * step.total_seconds() / width - 1e-9)
    with _single_threaded_blas(), np.errstate(all="ignore"):
        mean, lower, upper, method = _predict(grid, fit_steps, 1 - level)
    if width != step.total_seconds():
        # The model's steps are `width` seconds apart; the caller's are `step` apart.
        fit_at = width * np.arange(1, fit_steps + 1)
        at = step.total_seconds() * np.arange(1, count + 1)
        mean, lower, upper = (np.interp(at, fit_at, series) for series in (mean, lower, upper))
    return _assemble(readings.newest, step, level, method, mean, lower, upper, minimum, maximum)


def last_value_forecast(
    times: Sequence[dt.datetime],
    values: Sequence[float],
    *,
    horizon: dt.timedelta = dt.timedelta(minutes=30),
    step: dt.timedelta = dt.timedelta(minutes=1),
) -> Forecast:
    """Forecast that the newest reading stays as it is, with no interval (`level` 0)."""
    count = _points(horizon, step)
    readings = _readings(times, values, None, needed="a reading")
    newest = np.full(count, readings.values[readings.ago == 0].mean())
    return _assemble(readings.newest, step, 0.0, LAST_VALUE, newest, newest, newest, None, None)


def first_crossing(
    forecast: Forecast, *, low: float | None, high: float | None
) -> ForecastPoint | None:
    """Find the first point whose mean is below `low` or above `high`."""
    for point in forecast.points:
        if (low is not None and point.mean < low) or (high is not None and point.mean > high):
            return point
    return None


def _points(horizon: dt.timedelta, step: dt.timedelta) -> int:
    """How many points a forecast of `horizon` in steps of `step` has."""
    if step <= dt.timedelta(0):
        raise ValueError("step must be positive")
    if horizon < step:
        raise ValueError("horizon must be at least one step")
    count = horizon // step
    if count > MAX_POINTS:
        raise ValueError(f"horizon / step must be at most {MAX_POINTS} points")
    return count


def _check_bounds(minimum: float | None, maximum: float | None) -> None:
    """Reject bounds that are not numbers or that leave no room between them."""
    for bound in (minimum, maximum):
        if bound is not None and not math.isfinite(bound):
            raise ValueError("minimum and maximum must be finite")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValueError("minimum must not exceed maximum")


def _readings(
    times: Sequence[dt.datetime],
    values: Sequence[float],
    history: dt.timedelta | None,
    *,
    needed: str,
) -> _Readings:
    """The finite readings of the last `history` (all of them if None)."""
    if len(times) != len(values):
        raise ValueError("times and values must have the same length")
    for at in times:
        if not isinstance(at, dt.datetime) or at.utcoffset() is None:
            raise ValueError("times must be timezone-aware datetimes")
    try:
        level = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError("values must be numbers") from error
    if level.ndim != 1:
        raise ValueError("values must be a flat sequence of numbers")
    # A reading that is not a number carries no information; it does not void the rest.
    keep = np.isfinite(level)
    stamps = [at for at, ok in zip(times, keep, strict=True) if ok]
    if not stamps:
        raise NotEnoughData(f"a forecast needs {needed}; got none with a finite value")
    newest = max(stamps)
    ago = np.array([(newest - at).total_seconds() for at in stamps])
    level = level[keep]
    if history is not None:
        inside = ago < history.total_seconds()
        ago, level = ago[inside], level[inside]
    # One order for the same readings, however they came, so that sums round alike.
    order = np.lexsort((level, ago))
    return _Readings(newest.astimezone(dt.UTC), ago[order], level[order])


def _fit_width(ago: Array, step: dt.timedelta) -> float:
    """The bucket width the model runs on: `step`, or a multiple of it as wide as the spacing."""
    seconds = step.total_seconds()
    spacing = np.diff(np.unique(ago))
    if spacing.size == 0:
        return seconds
    return seconds * max(1, round(float(np.median(spacing)) / seconds))


def _grid(readings: _Readings, width: float) -> Array:
    """Mean per bucket, oldest first, ending with the bucket of the newest reading."""
    # Buckets are centred on the newest reading and every `width` before it, so that readings
    # about `width` apart each land in a bucket of their own despite jitter.
    bucket = np.floor(readings.ago / width + 0.5).astype(np.int64)
    sums = np.bincount(bucket, weights=readings.values)
    counts = np.bincount(bucket)
    filled = np.flatnonzero(counts)
    # A long gap separates readings that no line should join; only the recent side is used.
    gaps = np.flatnonzero(np.diff(filled) > MAX_GAP_BUCKETS + 1)
    if gaps.size:
        filled = filled[: gaps[0] + 1]
    if filled.size < MIN_BUCKETS:
        raise NotEnoughData(
            f"a forecast needs readings in at least {MIN_BUCKETS} different {_duration(width)} "
            f"intervals, with no more than {MAX_GAP_BUCKETS} empty ones in a row; "
            f"got {filled.size}"
        )
    # Index 0 is the newest bucket; reverse to run oldest first.
    span = np.arange(filled[-1], -1, -1)
    return np.interp(span, filled, sums[filled] / counts[filled])


def _duration(seconds: float) -> str:
    """A bucket width in words, e.g. "15-minute"."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"{seconds / size:g}-{unit}"
    return f"{seconds:g}-second"


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread for the duration, one forecast at a time."""
    # The optimiser's matrices are tiny: BLAS threads only contend for the cores, which makes a
    # fit several times slower on a busy machine. The lock keeps concurrent forecasts from
    # restoring each other's limits in the wrong order.
    with _BLAS_LOCK, _BLAS.limit(limits=1, user_api="blas"):
        yield


def _predict(grid: Array, steps: int, alpha: float) -> tuple[Array, Array, Array, str]:
    """Mean, lower and upper bounds for `steps` buckets after the grid, and the model's name."""
    scale = float(np.std(grid))
    if 0 < scale < math.inf:
        # Standardised values keep the optimiser's tolerances meaningful for any unit.
        centre = float(np.mean(grid))
        standard = (grid - centre) / scale
        fits = [
            (fit, method)
            for method, trend in ((DAMPED, True), (SIMPLE, False))
            if (fit := _ets(standard, steps, alpha, trend=trend)) is not None
        ]
        if fits:
            # AICc keeps the trend's two extra parameters out of short or trendless series.
            (_, mean, lower, upper), method = min(fits, key=lambda fit: fit[0][0])
            return centre + scale * mean, centre + scale * lower, centre + scale * upper, method
    return (*_naive(grid, steps, alpha), NAIVE)


def _ets(
    y: Array, steps: int, alpha: float, *, trend: bool
) -> tuple[float, Array, Array, Array] | None:
    """AICc, mean, lower and upper bounds of ETS with additive errors; None if unusable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            model = ETSModel(
                pd.Series(y),
                error="add",
                trend="add" if trend else None,
                damped_trend=trend,
            )
            result = model.fit(disp=False)
            if not result.mle_retvals.get("converged", True):
                return None
            frame = result.get_prediction(start=y.size, end=y.size + steps - 1).summary_frame(
                alpha=alpha
            )
            criterion = float(result.aicc)
        except Exception:  # noqa: BLE001  (see below)
            # statsmodels reports a failed fit in many ways; each means: use a simpler model.
            return None
    mean, lower, upper = (
        frame[name].to_numpy(dtype=np.float64) for name in ("mean", "pi_lower", "pi_upper")
    )
    if not (math.isfinite(criterion) and np.isfinite(np.stack([mean, lower, upper])).all()):
        return None
    return criterion, mean, lower, upper


def _naive(grid: Array, steps: int, alpha: float) -> tuple[Array, Array, Array]:
    """The newest bucket, with an interval of a random walk with the grid's step changes."""
    mean = np.full(steps, grid[-1])
    spread = float(np.std(np.diff(grid))) * NormalDist().inv_cdf(1 - alpha / 2)
    half = spread * np.sqrt(np.arange(1, steps + 1))
    return mean, mean - half, mean + half


def _assemble(
    newest: dt.datetime,
    step: dt.timedelta,
    level: float,
    method: str,
    mean: Array,
    lower: Array,
    upper: Array,
    minimum: float | None,
    maximum: float | None,
) -> Forecast:
    """Clamp the series to the bounds and attach the times of the points."""
    low = -np.inf if minimum is None else minimum
    high = np.inf if maximum is None else maximum
    mean, lower, upper = (np.clip(series, low, high) for series in (mean, lower, upper))
    points = tuple(
        ForecastPoint(newest + step * (index + 1), float(m), float(lo), float(hi))
        for index, (m, lo, hi) in enumerate(zip(mean, lower, upper, strict=True))
    )
    return Forecast(points=points, step=step, level=level, method=method)
