"""Anomaly model over patients' vital signs: per-patient-normalised windows, an IsolationForest
trained with scikit-learn and exported to ONNX, and scoring through onnxruntime.

Pure apart from the numerical work: no database, no files, no network. Training needs
scikit-learn and skl2onnx, which are imported only when training, so a worker that just scores
pays for onnxruntime alone.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime

from medcloud.analytics.simulation import Interval, simulate

VITALS: tuple[str, ...] = ("heart_rate", "spo2", "respiratory_rate", "temperature")
FEATURES: tuple[str, ...] = (
    *(f"{vital}_{feature}" for vital in VITALS for feature in ("z", "std_ratio", "slope")),
    "max_abs_z",
    "sum_squared_z",
)
"""Per vital: the window mean's z-score against the patient's baseline, the window's standard
deviation over the baseline's, and the trend in baseline standard deviations per minute. Then
two summaries of the z-scores: an isolation forest splits one feature at a time, so an episode
that moves a single vital out of twelve features is isolated slowly; the summaries move with
any vital."""
WINDOW = dt.timedelta(minutes=5)

# Defaults of the simulation the registry's evaluation figures refer to.
SIMULATION_PATIENTS = 20
SIMULATION_HOURS = 12.0
ANOMALY_SHARE = 0.015

SCORE_OUTPUT = "scores"
"""The ONNX output a Scorer reads. skl2onnx's IsolationForest graph has two outputs: `label`
(1 normal, -1 anomaly, at scikit-learn's own offset) and `scores`, scikit-learn's
`decision_function` (negative means anomalous). Scorer negates `scores`, and applies its own
threshold rather than the label."""

# A patient needs this much history before their own mean and spread are trusted.
MIN_BASELINE_READINGS = 30
# Typical adult values, used for a vital the patient has too little history of.
POPULATION: dict[str, tuple[float, float]] = {
    "heart_rate": (75.0, 12.0),
    "spo2": (97.0, 1.5),
    "respiratory_rate": (16.0, 3.0),
    "temperature": (36.8, 0.4),
}
# Smallest spread credited to a patient: a very steady patient, or a quantised reading (SpO2 in
# whole percent) whose robust spread comes out as zero, would otherwise turn ordinary measurement
# noise into huge z-scores.
STD_FLOOR: dict[str, float] = {
    "heart_rate": 2.0,
    "spo2": 0.8,
    "respiratory_rate": 1.0,
    "temperature": 0.1,
}
MIN_TRAINING_WINDOWS = 50
# Exporting costs about 40 ONNX nodes per tree, and skl2onnx's conversion time grows faster than
# the graph: 100 trees keep training to seconds.
TREES = 100
BULK_QUANTILE = 0.9
BULK_SPAN = 3.0
# Onnxruntime error texts can be long; the registry keeps a short reason.
_REASON_CHARS = 300

Series = Mapping[str, Sequence[tuple[dt.datetime, float]]]
FloatRows = npt.NDArray[np.float32]


class ModelRejected(ValueError):
    """A model that must not score: it cannot be loaded, or its inputs or outputs do not fit."""


@dataclass(frozen=True)
class Baseline:
    """A patient's own normal: a robust centre and spread per vital, from their history."""

    means: dict[str, float]
    stds: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    """How well flagged windows match windows overlapping injected anomalies."""

    precision: float
    recall: float
    windows: int
    anomalies: int


@dataclass(frozen=True)
class TrainedModel:
    """An exported model with what the registry records about it."""

    onnx: bytes
    features: int
    threshold: float
    trained_windows: int
    evaluation: Evaluation


def baseline(series: Series) -> Baseline:
    """Return the patient's normal per vital from their history."""
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    for vital in VITALS:
        values = np.array([value for _, value in series.get(vital, ())], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size < MIN_BASELINE_READINGS:
            mean, std = POPULATION[vital]
        else:
            # Median and scaled MAD: the history holds the patient's past episodes too, and they
            # must not widen what counts as normal for them.
            mean = float(np.median(values))
            std = 1.4826 * float(np.median(np.abs(values - mean)))
        means[vital] = mean
        stds[vital] = max(std, STD_FLOOR[vital])
    return Baseline(means=means, stds=stds)


def featurise(
    series: Series,
    base: Baseline,
    *,
    window: dt.timedelta = WINDOW,
    step: dt.timedelta | None = None,
) -> tuple[FloatRows, list[dt.datetime]]:
    """Return feature rows for consecutive windows, and the time each window ends.

    A window ending at `end` holds the readings in [end - window, end). Window ends fall on a
    grid of `step` (default: `window`) from midnight of the first reading's day, so the same
    readings always give the same windows; the first and last windows may be partly filled. A
    vital missing from a window gives neutral features (z 0, std ratio 1, slope 0); a window
    with no readings at all is skipped.
    """
    step = window if step is None else step
    if window <= dt.timedelta(0) or step <= dt.timedelta(0):
        raise ValueError("window and step must be positive")
    missing = [vital for vital in VITALS if vital not in base.means or vital not in base.stds]
    if missing:
        raise ValueError(f"baseline lacks {', '.join(missing)}")
    readings = {vital: list(series.get(vital, ())) for vital in VITALS}
    stamps = [stamp for values in readings.values() for stamp, _ in values]
    if not stamps:
        return np.empty((0, len(FEATURES)), dtype=np.float32), []
    first, last = min(stamps), max(stamps)
    origin = first.replace(hour=0, minute=0, second=0, microsecond=0)
    step_minutes = step / dt.timedelta(minutes=1)
    window_minutes = window / dt.timedelta(minutes=1)
    first_end = math.floor(_minutes(first, origin) / step_minutes) + 1
    last_end = math.floor((_minutes(last, origin) + window_minutes) / step_minutes)
    ends = np.arange(first_end, last_end + 1, dtype=np.float64) * step_minutes
    starts = ends - window_minutes

    rows = np.empty((ends.size, len(FEATURES)), dtype=np.float64)
    counts = np.zeros(ends.size, dtype=np.int64)
    for index, vital in enumerate(VITALS):
        times, values = _arrays(readings[vital], origin)
        z = (values - base.means[vital]) / base.stds[vital]
        rows[:, 3 * index : 3 * index + 3], n = _window_stats(times, z, starts, ends)
        counts += n
    means = rows[:, 0 : 3 * len(VITALS) : 3]
    rows[:, -2] = np.abs(means).max(axis=1)
    rows[:, -1] = np.square(means).sum(axis=1)
    kept = counts > 0
    end_times = [origin + dt.timedelta(minutes=float(minutes)) for minutes in ends[kept].tolist()]
    return rows[kept].astype(np.float32), end_times


def _minutes(stamp: dt.datetime, origin: dt.datetime) -> float:
    return (stamp - origin) / dt.timedelta(minutes=1)


def _arrays(
    readings: Sequence[tuple[dt.datetime, float]], origin: dt.datetime
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    times = np.array([_minutes(stamp, origin) for stamp, _ in readings], dtype=np.float64)
    values = np.array([value for _, value in readings], dtype=np.float64)
    finite = np.isfinite(values)
    times, values = times[finite], values[finite]
    order = np.argsort(times, kind="stable")
    return times[order], values[order]


def _window_stats(
    times: npt.NDArray[np.float64],
    z: npt.NDArray[np.float64],
    starts: npt.NDArray[np.float64],
    ends: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Return (mean z, std ratio, slope per minute) per window, and readings per window."""
    lo = np.searchsorted(times, starts, side="left")
    hi = np.searchsorted(times, ends, side="left")
    n = (hi - lo).astype(np.int64)
    stats = np.empty((starts.size, 3), dtype=np.float64)
    stats[:] = (0.0, 1.0, 0.0)
    if not n.any():
        return stats, n
    # Overlapping windows share readings, so each reading is listed once per window that holds
    # it; sums per window then come from bincount, with times local to the window for precision.
    segment = np.repeat(np.arange(starts.size), n)
    offsets = np.cumsum(n) - n
    member = np.arange(segment.size) - np.repeat(offsets, n) + np.repeat(lo, n)
    local_t = times[member] - starts[segment]
    member_z = z[member]
    size = starts.size
    filled = n > 0
    safe_n = np.maximum(n, 1)
    mean_z = np.bincount(segment, member_z, size) / safe_n
    mean_t = np.bincount(segment, local_t, size) / safe_n
    dz = member_z - mean_z[segment]
    dtime = local_t - mean_t[segment]
    sum_zz = np.bincount(segment, dz * dz, size)
    sum_tz = np.bincount(segment, dtime * dz, size)
    sum_tt = np.bincount(segment, dtime * dtime, size)
    stats[filled, 0] = mean_z[filled]
    # One reading has no spread and no trend: those stay neutral.
    spread = n >= 2
    stats[spread, 1] = np.sqrt(sum_zz[spread] / (n[spread] - 1))
    trend = spread & (sum_tt > 0)
    stats[trend, 2] = sum_tz[trend] / sum_tt[trend]
    return stats, n


def featurise_patients(
    patients: Iterable[Series], *, window: dt.timedelta = WINDOW
) -> list[tuple[FloatRows, list[dt.datetime]]]:
    """Featurise each patient's series against the baseline of that same series."""
    return [featurise(series, baseline(series), window=window) for series in patients]


def train(
    features: npt.NDArray[np.floating[Any]], *, seed: int = 0, contamination: float = 0.02
) -> TrainedModel:
    """Fit an IsolationForest, export it to ONNX, pick its threshold and evaluate it.

    `contamination` is the share of training windows taken to be anomalous. It sets the
    forest's own offset (the graph's `label` output) and must stay below 1 - BULK_QUANTILE,
    so that the bulk the threshold is estimated from is normal; see `bulk_threshold`.
    """
    rows = _training_rows(features)
    if not 0.0 < contamination < 1.0 - BULK_QUANTILE:
        raise ValueError(f"contamination must be in (0, {1.0 - BULK_QUANTILE:g})")
    onnx = export(fit(rows, seed=seed, contamination=contamination))
    # The threshold comes from the exported model's own float32 scores, so the worker applies
    # it to exactly the numbers it was calibrated on.
    probe = Scorer.load(onnx, features=rows.shape[1], threshold=0.0)
    threshold = bulk_threshold(probe.scores(rows))
    return TrainedModel(
        onnx=onnx,
        features=rows.shape[1],
        threshold=threshold,
        trained_windows=int(rows.shape[0]),
        evaluation=evaluate(probe.with_threshold(threshold)),
    )


def bulk_threshold(scores: npt.NDArray[np.floating[Any]]) -> float:
    """Return the decision threshold extrapolated from the bulk of training scores."""
    # Median plus BULK_SPAN times the distance from the median to the BULK_QUANTILE. Anomalies, a
    # few percent of windows, hardly move either quantile; a plain (1 - contamination) quantile
    # instead lands among the anomalies or in the normal tail whenever the training data holds
    # more or fewer anomalies than assumed. Were the normal scores' upper tail exponential, this
    # would flag one normal window in 250 (a tail of 0.5 / 5 ** BULK_SPAN).
    median = float(np.median(scores))
    return median + BULK_SPAN * (float(np.quantile(scores, BULK_QUANTILE)) - median)


def _training_rows(features: npt.NDArray[np.floating[Any]]) -> FloatRows:
    rows = np.asarray(features, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != len(FEATURES):
        raise ValueError(f"features must have shape (n, {len(FEATURES)}), not {rows.shape}")
    if rows.shape[0] < MIN_TRAINING_WINDOWS:
        raise ValueError(
            f"need at least {MIN_TRAINING_WINDOWS} training windows, have {rows.shape[0]}"
        )
    if not np.isfinite(rows).all():
        raise ValueError("features must be finite")
    return rows


def fit(
    rows: npt.NDArray[np.floating[Any]],
    *,
    seed: int = 0,
    contamination: float = 0.02,
    trees: int = TREES,
) -> Any:
    """Fit a seeded IsolationForest to feature rows and return it."""
    from sklearn.ensemble import IsolationForest

    data = np.asarray(rows, dtype=np.float32)
    # More than scikit-learn's 256 samples per tree separates single-vital episodes better; the
    # size of the exported graph is set by the number of trees, not their depth.
    forest = IsolationForest(
        n_estimators=trees,
        max_samples=min(512, data.shape[0]),
        contamination=contamination,
        random_state=seed,
        n_jobs=1,
    )
    forest.fit(data)
    return forest


# ai.onnx.ml 3 holds the tree-ensemble operators the graph needs, and both opsets are old enough
# for every onnxruntime medcloud supports to run.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def export(forest: Any) -> bytes:
    """Convert a fitted IsolationForest to serialised ONNX taking float32 rows."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    features = int(forest.n_features_in_)
    model = convert_sklearn(
        forest,
        initial_types=[("input", FloatTensorType([None, features]))],
        target_opset=TARGET_OPSET,
        # skl2onnx's identity removal is quadratic in the graph's size (some 40 nodes per tree),
        # and onnxruntime optimises the graph itself when loading it.
        model_optim=False,
    )
    # skl2onnx names the graph with a random UUID and lists opsets in set order, which changes
    # with the interpreter's hash seed; fixing both makes the bytes a function of the forest, so
    # retraining with the same seed and data gives the same model.
    model.graph.name = "medcloud_anomaly"
    opsets = sorted((opset.domain, opset.version) for opset in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    entry = model.metadata_props.add()
    entry.key, entry.value = "medcloud.features", ",".join(FEATURES[:features])
    return bytes(model.SerializeToString())


class Scorer:
    """Score feature rows with an ONNX anomaly model through onnxruntime."""

    def __init__(self, session: Any, *, input_name: str, features: int, threshold: float) -> None:
        self._session = session
        self._input_name = input_name
        self.features = features
        self.threshold = threshold

    @classmethod
    def load(cls, onnx: bytes, *, features: int = len(FEATURES), threshold: float) -> Scorer:
        """Load and check a model, or raise ModelRejected saying why it cannot score."""
        if not math.isfinite(threshold):
            raise ModelRejected(f"threshold must be finite, not {threshold}")
        options = onnxruntime.SessionOptions()
        # Batches are small; one thread keeps the worker's other tasks their cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(
                bytes(onnx), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several types for a malformed model
            raise ModelRejected(f"cannot be loaded: {_reason(exc)}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelRejected(f"wrong input: expects one input, has {len(inputs)}")
        shape = list(inputs[0].shape)
        last = shape[-1] if shape else None
        if len(shape) != 2 or last != features:
            has = str(last) if isinstance(last, int) else "an unfixed number"
            raise ModelRejected(
                f"wrong input shape: expects {features} features, has {has} "
                f"(input shape {shape}, expected [N, {features}])"
            )
        if inputs[0].type != "tensor(float)":
            raise ModelRejected(f"wrong input type: expects tensor(float), has {inputs[0].type}")
        names = [output.name for output in session.get_outputs()]
        if SCORE_OUTPUT not in names:
            raise ModelRejected(f"wrong output: expects a {SCORE_OUTPUT!r} output, has {names}")
        scorer = cls(session, input_name=inputs[0].name, features=features, threshold=threshold)
        try:
            dummy = scorer.scores(np.zeros((3, features), dtype=np.float32))
        except ModelRejected:
            raise
        except Exception as exc:  # a graph that loads can still fail when run
            raise ModelRejected(
                f"wrong output: the model fails on a test batch: {_reason(exc)}"
            ) from exc
        if not np.isfinite(dummy).all():
            raise ModelRejected("wrong output: non-finite scores on a test batch")
        return scorer

    def with_threshold(self, threshold: float) -> Scorer:
        """Return a scorer sharing this model's session with another threshold."""
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, not {threshold}")
        return Scorer(
            self._session, input_name=self._input_name, features=self.features, threshold=threshold
        )

    def scores(self, rows: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        """Return an anomaly score per row, higher meaning more anomalous."""
        batch = np.ascontiguousarray(rows, dtype=np.float32)
        if batch.ndim != 2 or batch.shape[1] != self.features:
            raise ValueError(f"rows must have shape (n, {self.features}), not {batch.shape}")
        if batch.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        (decision,) = self._session.run([SCORE_OUTPUT], {self._input_name: batch})
        decision = np.asarray(decision)
        if decision.size != batch.shape[0] or not np.issubdtype(decision.dtype, np.floating):
            raise ModelRejected(
                f"wrong output: {SCORE_OUTPUT!r} has shape {decision.shape} and type "
                f"{decision.dtype} for {batch.shape[0]} rows"
            )
        # scikit-learn's decision function is low for anomalies; negate so higher is worse.
        return np.asarray(-decision.reshape(-1), dtype=np.float64)

    def flags(self, rows: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.bool_]:
        """Return whether each row scores above the threshold."""
        return np.asarray(self.scores(rows) > self.threshold, dtype=np.bool_)


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def evaluate(
    model: Scorer,
    *,
    seed: int = 11,
    patients: int = SIMULATION_PATIENTS,
    hours: float = SIMULATION_HOURS,
    anomaly_share: float = ANOMALY_SHARE,
) -> Evaluation:
    """Measure flagged windows against injected anomalies on freshly simulated patients."""
    series, intervals = simulate(
        patients=patients, hours=hours, anomaly_share=anomaly_share, seed=seed
    )
    flagged = hits = anomalies = windows = 0
    for (rows, ends), injected in zip(featurise_patients(series), intervals, strict=True):
        flags = model.flags(rows)
        labels = np.array([_overlaps(end - WINDOW, end, injected) for end in ends], dtype=bool)
        windows += len(ends)
        anomalies += int(labels.sum())
        flagged += int(flags.sum())
        hits += int((flags & labels).sum())
    # Undefined ratios count as 0: a model with nothing to show for itself is not promoted.
    return Evaluation(
        precision=hits / flagged if flagged else 0.0,
        recall=hits / anomalies if anomalies else 0.0,
        windows=windows,
        anomalies=anomalies,
    )


def _overlaps(start: dt.datetime, end: dt.datetime, intervals: Sequence[Interval]) -> bool:
    return any(begin < end and finish > start for begin, finish in intervals)


def simulated_training_set(
    *,
    patients: int = SIMULATION_PATIENTS,
    hours: float = SIMULATION_HOURS,
    anomaly_share: float = ANOMALY_SHARE,
    seed: int = 0,
) -> FloatRows:
    """Return feature rows of a fresh simulation, to train on without stored readings."""
    series, _ = simulate(patients=patients, hours=hours, anomaly_share=anomaly_share, seed=seed)
    featurised = featurise_patients(series)
    if not featurised:
        return np.empty((0, len(FEATURES)), dtype=np.float32)
    return np.concatenate([rows for rows, _ in featurised])
