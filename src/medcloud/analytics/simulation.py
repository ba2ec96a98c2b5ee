"""Simulated patients for the anomaly model: 1-minute vitals with personal baselines, drift, a
daily rhythm, harmless bumps, sensor gaps and injected anomalous episodes (desaturation with
tachycardia, fever with tachypnoea, bradycardia), with the intervals where they were injected."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SimulatedSeries = dict[str, list[tuple[dt.datetime, float]]]
Interval = tuple[dt.datetime, dt.datetime]

SIMULATION_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class _Physiology:
    """How one vital varies in simulated patients: (low, high) ranges to draw from."""

    mean: tuple[float, float]
    noise: tuple[float, float]
    drift: tuple[float, float]
    circadian: tuple[float, float]
    resolution: float
    limits: tuple[float, float]


PHYSIOLOGY: dict[str, _Physiology] = {
    "heart_rate": _Physiology((58, 95), (1.5, 3.5), (2.0, 5.0), (2.0, 6.0), 1.0, (25, 220)),
    "spo2": _Physiology((94.5, 98.5), (0.4, 0.9), (0.3, 0.7), (0.0, 0.0), 1.0, (50, 100)),
    "respiratory_rate": _Physiology((12, 19), (0.7, 1.5), (0.5, 1.2), (0.0, 1.0), 1.0, (4, 60)),
    "temperature": _Physiology((36.4, 37.2), (0.03, 0.07), (0.05, 0.15), (0.1, 0.3), 0.1, (33, 42)),
}
DRIFT_MINUTES = 45.0


@dataclass(frozen=True)
class _Episode:
    """An injected anomaly kind: a linear ramp, a plateau, and a ramp back, in minutes, and the
    change per vital at full strength; each is drawn from its (low, high) range."""

    ramp: tuple[float, float]
    plateau: tuple[float, float]
    changes: dict[str, tuple[float, float]]

    @property
    def mean_minutes(self) -> float:
        """Return the mean length of the labelled interval: the ramp plus the plateau."""
        return (sum(self.ramp) + sum(self.plateau)) / 2


# The labelled interval of an episode is where its change is at least half its full size, so
# a window barely touched by a ramp is not counted as anomalous.
EPISODES: dict[str, _Episode] = {
    "desaturation_with_tachycardia": _Episode(
        (1.0, 2.0),
        (5.0, 15.0),
        {"spo2": (-12.0, -6.0), "heart_rate": (20.0, 40.0), "respiratory_rate": (2.0, 6.0)},
    ),
    "fever_with_tachypnoea": _Episode(
        (4.0, 8.0),
        (20.0, 40.0),
        {"temperature": (1.0, 2.0), "respiratory_rate": (6.0, 12.0), "heart_rate": (10.0, 20.0)},
    ),
    "bradycardia": _Episode((0.5, 1.5), (4.0, 12.0), {"heart_rate": (-40.0, -25.0)}),
}


def simulate(
    *, patients: int, hours: float, anomaly_share: float, seed: int
) -> tuple[list[SimulatedSeries], list[list[Interval]]]:
    """Simulate patients' vitals at one-minute resolution with injected anomalies.

    Returns each patient's series and the intervals of their injected anomalies. Normal data
    has personal baselines, slow drift, a daily rhythm, short benign activity bumps, gaps and
    quantised readings; anomalies are sudden desaturation with tachycardia, fever with
    tachypnoea, and bradycardia. `anomaly_share` is the expected share of time in anomalies.
    """
    if patients < 0 or hours <= 0:
        raise ValueError("patients must be >= 0 and hours > 0")
    if not 0.0 <= anomaly_share <= 0.2:
        raise ValueError("anomaly_share must be in [0, 0.2]")
    minutes = max(1, round(hours * 60))
    series: list[SimulatedSeries] = []
    intervals: list[list[Interval]] = []
    for patient in range(patients):
        # Seeded per patient, so a patient's data does not depend on how many others there are.
        rng = np.random.default_rng([seed, patient])
        one, injected = _simulate_patient(rng, minutes, anomaly_share)
        series.append(one)
        intervals.append(injected)
    return series, intervals


def _simulate_patient(
    rng: np.random.Generator, minutes: int, anomaly_share: float
) -> tuple[SimulatedSeries, list[Interval]]:
    start = SIMULATION_START + dt.timedelta(seconds=int(rng.integers(0, 86_400)))
    t = np.arange(minutes, dtype=np.float64)
    phase = rng.uniform(0, 2 * math.pi)
    signal: dict[str, npt.NDArray[np.float64]] = {}
    for vital, physiology in PHYSIOLOGY.items():
        level = rng.uniform(*physiology.mean)
        daily = rng.uniform(*physiology.circadian) * np.sin(2 * math.pi * t / 1440 + phase)
        drift = _ar1(rng, minutes, rng.uniform(*physiology.drift))
        noise = rng.normal(0.0, rng.uniform(*physiology.noise), minutes)
        signal[vital] = level + daily + drift + noise

    # Benign activity (moving, talking): heart and breathing rate rise a little, briefly.
    for _ in range(rng.poisson(minutes / 120)):
        onset = rng.uniform(0, minutes)
        shape = _trapezoid(t, onset, 1.0, rng.uniform(2.0, 8.0))
        signal["heart_rate"] += rng.uniform(4.0, 12.0) * shape
        signal["respiratory_rate"] += rng.uniform(1.0, 3.0) * shape

    injected: list[Interval] = []
    mean_minutes = sum(episode.mean_minutes for episode in EPISODES.values()) / len(EPISODES)
    expected = anomaly_share * minutes / mean_minutes
    # The whole part of the expected count, plus one more with the fractional part's chance:
    # counts then vary less between patients than a Poisson draw would make them.
    count = int(expected) + int(rng.random() < expected - int(expected))
    occupied: list[tuple[float, float]] = []
    for _ in range(count):
        episode = list(EPISODES.values())[int(rng.integers(len(EPISODES)))]
        ramp, plateau = rng.uniform(*episode.ramp), rng.uniform(*episode.plateau)
        length = 2 * ramp + plateau
        episode_onset = _free_onset(rng, minutes, length, occupied)
        if episode_onset is None:
            continue
        occupied.append((episode_onset, episode_onset + length))
        shape = _trapezoid(t, episode_onset, ramp, plateau)
        for vital, change in episode.changes.items():
            signal[vital] += rng.uniform(*change) * shape
        begin = episode_onset + ramp / 2
        injected.append(
            (
                start + dt.timedelta(minutes=begin),
                start + dt.timedelta(minutes=begin + ramp + plateau),
            )
        )
    injected.sort()

    stamps = [start + dt.timedelta(minutes=int(minute)) for minute in range(minutes)]
    series: SimulatedSeries = {}
    for vital, physiology in PHYSIOLOGY.items():
        values = np.clip(
            np.round(signal[vital] / physiology.resolution) * physiology.resolution,
            *physiology.limits,
        )
        present = _present(rng, minutes)
        series[vital] = [
            (stamps[i], round(float(values[i]), 2)) for i in np.flatnonzero(present).tolist()
        ]
    return series, injected


def _ar1(rng: np.random.Generator, minutes: int, std: float) -> npt.NDArray[np.float64]:
    """Return a stationary AR(1) wander with the given spread and DRIFT_MINUTES memory."""
    keep = math.exp(-1.0 / DRIFT_MINUTES)
    shocks = rng.normal(0.0, std * math.sqrt(1 - keep * keep), minutes)
    out = np.empty(minutes, dtype=np.float64)
    value = rng.normal(0.0, std)
    for i in range(minutes):
        value = keep * value + shocks[i]
        out[i] = value
    return out


def _trapezoid(
    t: npt.NDArray[np.float64], onset: float, ramp: float, plateau: float
) -> npt.NDArray[np.float64]:
    """Return 0 outside the episode, rising linearly to 1 over `ramp`, holding, then falling."""
    rise = (t - onset) / ramp
    fall = (onset + 2 * ramp + plateau - t) / ramp
    return np.asarray(np.clip(np.minimum(rise, fall), 0.0, 1.0), dtype=np.float64)


def _free_onset(
    rng: np.random.Generator, minutes: int, length: float, occupied: list[tuple[float, float]]
) -> float | None:
    """Return an onset whose episode keeps clear of the others and of the series' ends."""
    margin = 20.0
    latest = minutes - margin - length
    if latest <= margin:
        return None
    for _ in range(50):
        onset = rng.uniform(margin, latest)
        if all(onset > end + margin or onset + length + margin < begin for begin, end in occupied):
            return float(onset)
    return None


def _present(rng: np.random.Generator, minutes: int) -> npt.NDArray[np.bool_]:
    """Return which minutes have a reading: sensors drop single readings and go off for a while."""
    present = rng.random(minutes) >= 0.02
    for _ in range(rng.poisson(minutes / 240)):
        gap_start = int(rng.integers(0, minutes))
        present[gap_start : gap_start + int(rng.uniform(5, 30))] = False
    return present
