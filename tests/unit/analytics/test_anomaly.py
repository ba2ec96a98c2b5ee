"""The anomaly model: windows and baselines, training, the ONNX round trip, refusal of unfit
models, and precision and recall on simulated injected anomalies."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from medcloud.analytics.anomaly import (
    ANOMALY_SHARE,
    FEATURES,
    MIN_TRAINING_WINDOWS,
    POPULATION,
    STD_FLOOR,
    VITALS,
    WINDOW,
    Baseline,
    ModelRejected,
    Scorer,
    TrainedModel,
    baseline,
    bulk_threshold,
    evaluate,
    export,
    featurise,
    featurise_patients,
    fit,
    simulated_training_set,
    train,
)
from medcloud.analytics.simulation import simulate

T0 = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.UTC)
NEUTRAL = (0.0, 1.0, 0.0)
STEADY = Baseline(
    means={"heart_rate": 70.0, "spo2": 97.0, "respiratory_rate": 15.0, "temperature": 36.8},
    stds={"heart_rate": 2.0, "spo2": 1.0, "respiratory_rate": 1.0, "temperature": 0.2},
)
Reading = tuple[dt.datetime, float]


def minutes(*offsets: float) -> list[dt.datetime]:
    return [T0 + dt.timedelta(minutes=offset) for offset in offsets]


def column(vital: str, feature: str) -> int:
    return FEATURES.index(f"{vital}_{feature}")


def vital_features(row: npt.NDArray[np.float32], vital: str) -> tuple[float, float, float]:
    start = column(vital, "z")
    return (float(row[start]), float(row[start + 1]), float(row[start + 2]))


@pytest.fixture(scope="module")
def training_rows() -> npt.NDArray[np.float32]:
    return simulated_training_set(patients=12, hours=8, seed=0)


@pytest.fixture(scope="module")
def trained(training_rows: npt.NDArray[np.float32]) -> TrainedModel:
    return train(training_rows, seed=0)


@pytest.fixture(scope="module")
def scorer(trained: TrainedModel) -> Scorer:
    return Scorer.load(trained.onnx, threshold=trained.threshold)


# --- Windows and baselines ---------------------------------------------------------------------


def test_featurise_measures_level_spread_and_trend_against_the_patients_baseline() -> None:
    # Heart rate climbing 2 bpm a minute from the patient's mean: z 0, 1, 2, 3, 4.
    series = {"heart_rate": list(zip(minutes(0, 1, 2, 3, 4), [70, 72, 74, 76, 78], strict=True))}
    rows, ends = featurise(series, STEADY)
    assert ends == minutes(5)
    z, spread, slope = vital_features(rows[0], "heart_rate")
    assert z == pytest.approx(2.0)
    assert spread == pytest.approx(math.sqrt(2.5))
    assert slope == pytest.approx(1.0)
    assert rows[0][FEATURES.index("max_abs_z")] == pytest.approx(2.0)
    assert rows[0][FEATURES.index("sum_squared_z")] == pytest.approx(4.0)


def test_a_vital_missing_from_a_window_contributes_neutral_values() -> None:
    series = {
        "heart_rate": [(stamp, 90.0) for stamp in minutes(0, 1, 2, 3, 4)],
        "spo2": [(stamp, 97.0) for stamp in minutes(5, 6, 7, 8, 9)],
    }
    rows, ends = featurise(series, STEADY)
    assert ends == minutes(5, 10)
    first, second = rows
    assert vital_features(first, "heart_rate")[0] == pytest.approx(10.0)
    for vital in ("spo2", "respiratory_rate", "temperature"):
        assert vital_features(first, vital) == NEUTRAL
    for vital in ("heart_rate", "respiratory_rate", "temperature"):
        assert vital_features(second, vital) == NEUTRAL


def test_a_single_reading_gives_a_level_but_neutral_spread_and_trend() -> None:
    rows, _ = featurise({"temperature": [(T0, 37.8)]}, STEADY)
    assert vital_features(rows[0], "temperature") == pytest.approx((5.0, 1.0, 0.0))


def test_windows_without_any_readings_are_skipped() -> None:
    series = {"respiratory_rate": [(stamp, 15.0) for stamp in minutes(1, 2, 31, 32)]}
    rows, ends = featurise(series, STEADY)
    assert ends == minutes(5, 35)
    assert rows.shape == (2, len(FEATURES))


def test_no_readings_give_no_rows() -> None:
    rows, ends = featurise({vital: [] for vital in VITALS}, STEADY)
    assert rows.shape == (0, len(FEATURES))
    assert rows.dtype == np.float32
    assert ends == []


def test_a_step_shorter_than_the_window_gives_overlapping_windows_on_a_fixed_grid() -> None:
    late = T0 + dt.timedelta(seconds=20)
    series = {"heart_rate": [(late + dt.timedelta(minutes=i), 70.0 + i) for i in range(10)]}
    rows, ends = featurise(series, STEADY, step=dt.timedelta(minutes=1))
    assert ends == minutes(*range(1, 15))
    # The window ending 08:05 holds the readings at 08:00:20 ... 08:04:20.
    assert vital_features(rows[4], "heart_rate")[0] == pytest.approx(1.0)


def test_readings_out_of_order_or_not_finite_are_handled() -> None:
    series = {"heart_rate": [(T0 + dt.timedelta(minutes=3), 76.0), (T0, 70.0), (T0, math.nan)]}
    rows, _ = featurise(series, STEADY)
    assert vital_features(rows[0], "heart_rate") == pytest.approx((1.5, math.sqrt(4.5), 1.0))


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(VITALS),
        st.lists(
            st.tuples(st.integers(0, 24 * 60 * 60), st.floats(-1e4, 1e4, allow_nan=False)),
            max_size=30,
        ),
    )
)
def test_features_are_always_finite_with_one_row_per_filled_window(
    raw: dict[str, list[tuple[int, float]]],
) -> None:
    series = {
        vital: [(T0 + dt.timedelta(seconds=s), value) for s, value in readings]
        for vital, readings in raw.items()
    }
    rows, ends = featurise(series, baseline(series))
    assert rows.shape == (len(ends), len(FEATURES))
    assert np.isfinite(rows).all()
    assert ends == sorted(set(ends))
    stamps = [stamp for readings in series.values() for stamp, _ in readings]
    assert all(any(end - WINDOW <= stamp < end for stamp in stamps) for end in ends)


def test_the_baseline_is_the_patients_own_and_ignores_a_short_episode() -> None:
    rng = np.random.default_rng(1)
    normal = 62 + rng.normal(0, 3, 240)
    episode = np.full(12, 140.0)
    stamps = minutes(*range(252))
    history = {"heart_rate": list(zip(stamps, [*normal, *episode], strict=True))}
    base = baseline(history)
    assert base.means["heart_rate"] == pytest.approx(62, abs=1)
    assert base.stds["heart_rate"] == pytest.approx(3, abs=0.6)


def test_a_vital_without_enough_history_falls_back_on_population_norms() -> None:
    base = baseline({"spo2": [(T0, 91.0)]})
    assert (base.means["spo2"], base.stds["spo2"]) == POPULATION["spo2"]


def test_a_perfectly_steady_vital_keeps_a_minimum_spread() -> None:
    base = baseline({"spo2": [(stamp, 98.0) for stamp in minutes(*range(100))]})
    assert base.means["spo2"] == 98.0
    assert base.stds["spo2"] == STD_FLOOR["spo2"]


# --- Simulation ----------------------------------------------------------------------------------


def test_the_simulation_is_deterministic_for_a_seed() -> None:
    first = simulate(patients=2, hours=2, anomaly_share=0.05, seed=4)
    assert first == simulate(patients=2, hours=2, anomaly_share=0.05, seed=4)
    assert first != simulate(patients=2, hours=2, anomaly_share=0.05, seed=5)


def test_the_simulation_injects_anomalies_inside_the_series_at_about_the_share_asked() -> None:
    series, intervals = simulate(patients=30, hours=6, anomaly_share=0.04, seed=2)
    inside = 0.0
    for one, injected in zip(series, intervals, strict=True):
        assert set(one) == set(VITALS)
        stamps = [stamp for readings in one.values() for stamp, _ in readings]
        for begin, end in injected:
            assert min(stamps) < begin < end < max(stamps)
            inside += (end - begin) / dt.timedelta(minutes=1)
    assert inside / (30 * 6 * 60) == pytest.approx(0.04, rel=0.35)
    _, none = simulate(patients=5, hours=6, anomaly_share=0.0, seed=2)
    assert none == [[]] * 5


# --- Training and the ONNX round trip ------------------------------------------------------------


def test_onnxruntime_scores_agree_with_the_scikit_learn_model_on_the_same_rows(
    training_rows: npt.NDArray[np.float32],
) -> None:
    forest: Any = fit(training_rows, seed=3, trees=25)
    scorer = Scorer.load(export(forest), threshold=0.0)
    rows = training_rows[:400]
    expected = -forest.decision_function(rows)
    scores = scorer.scores(rows)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    clear = np.abs(expected) > 1e-5
    # Threshold 0 on the negated decision function is scikit-learn's own decision.
    assert (scorer.flags(rows)[clear] == (forest.predict(rows) == -1)[clear]).all()
    assert (np.argsort(scores[clear]) == np.argsort(expected[clear])).mean() > 0.99


def test_fitting_and_exporting_are_deterministic_for_a_seed(
    training_rows: npt.NDArray[np.float32],
) -> None:
    exported = export(fit(training_rows, seed=1, trees=5))
    assert exported == export(fit(training_rows, seed=1, trees=5))
    # Opsets in a fixed order: otherwise the bytes change with the interpreter's hash seed.
    opsets = [
        (opset.domain, opset.version) for opset in onnx.load_from_string(exported).opset_import
    ]
    assert opsets == sorted(opsets)


def test_the_trained_model_records_what_the_registry_needs(
    trained: TrainedModel, training_rows: npt.NDArray[np.float32]
) -> None:
    assert trained.features == len(FEATURES)
    assert trained.trained_windows == len(training_rows)
    assert trained.evaluation.windows > 0
    assert trained.evaluation.anomalies > 0
    assert math.isfinite(trained.threshold)


def test_the_threshold_flags_only_the_tail_of_the_training_windows(
    scorer: Scorer, training_rows: npt.NDArray[np.float32]
) -> None:
    assert 0.005 < scorer.flags(training_rows).mean() < 0.05


def test_the_threshold_hardly_moves_with_the_share_of_anomalies_in_training() -> None:
    rng = np.random.default_rng(7)
    normal = rng.exponential(0.02, 5000) - 0.12
    bulk, plain = [], []
    for share in (0.0, 0.01, 0.02, 0.03):
        scores = np.concatenate([normal, rng.uniform(0.05, 0.3, int(share * len(normal)))])
        bulk.append(bulk_threshold(scores))
        plain.append(float(np.quantile(scores, 0.98)))
    assert max(bulk) - min(bulk) < 0.02
    assert max(plain) - min(plain) > 0.1
    assert 0.001 < np.mean(normal > bulk[0]) < 0.01


def test_training_refuses_a_contamination_that_would_reach_the_bulk(
    training_rows: npt.NDArray[np.float32],
) -> None:
    with pytest.raises(ValueError, match="contamination"):
        train(training_rows, contamination=0.2)


def test_injected_anomalies_score_higher_than_normal_windows(scorer: Scorer) -> None:
    series, intervals = simulate(patients=12, hours=8, anomaly_share=0.08, seed=31)
    anomalous: list[float] = []
    normal: list[float] = []
    for (rows, ends), injected in zip(featurise_patients(series), intervals, strict=True):
        for score, end in zip(scorer.scores(rows), ends, strict=True):
            if any(begin <= end - WINDOW and end <= finish for begin, finish in injected):
                anomalous.append(float(score))
            elif all(
                end + WINDOW < begin or end - 2 * WINDOW > finish for begin, finish in injected
            ):
                normal.append(float(score))
    assert len(anomalous) >= 50
    assert np.median(anomalous) > np.quantile(normal, 0.99)
    assert np.mean(np.array(anomalous) > np.quantile(normal, 0.95)) >= 0.9


def test_the_evaluation_reaches_the_precision_and_recall_targets(
    trained: TrainedModel, scorer: Scorer
) -> None:
    assert trained.evaluation.precision >= 0.6
    assert trained.evaluation.recall >= 0.7
    small = evaluate(scorer, seed=23, patients=10, hours=8)
    assert small.anomalies > 0
    assert small.precision >= 0.6
    assert small.recall >= 0.7


def test_a_model_that_flags_nothing_scores_zero() -> None:
    never: Any = _StubScorer(flag=False)
    evaluation = evaluate(never, patients=4, hours=4, anomaly_share=ANOMALY_SHARE * 4)
    assert (evaluation.precision, evaluation.recall) == (0.0, 0.0)
    assert evaluation.anomalies > 0


class _StubScorer:
    def __init__(self, *, flag: bool) -> None:
        self.flag = flag

    def flags(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        return np.full(len(rows), self.flag)


def test_training_refuses_rows_of_the_wrong_width_or_too_few_rows(
    training_rows: npt.NDArray[np.float32],
) -> None:
    with pytest.raises(ValueError, match="shape"):
        train(training_rows[:, :5])
    with pytest.raises(ValueError, match=f"at least {MIN_TRAINING_WINDOWS}"):
        train(training_rows[:10])


# --- Refusing models -----------------------------------------------------------------------------


def test_flags_are_the_scores_above_the_threshold(
    scorer: Scorer, training_rows: npt.NDArray[np.float32]
) -> None:
    scores = scorer.scores(training_rows)
    strict = scorer.with_threshold(float(np.median(scores)))
    assert (strict.flags(training_rows) == (scores > np.median(scores))).all()
    assert scorer.scores(training_rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        scorer.scores(training_rows[:, :5])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda _: np.random.default_rng(0).bytes(4096), id="random-bytes"),
        pytest.param(lambda model: model[: len(model) // 2], id="truncated"),
        pytest.param(lambda model: model[:-7], id="last-bytes-missing"),
        pytest.param(lambda _: b"", id="empty"),
    ],
)
def test_a_corrupt_model_is_refused_as_not_loadable(trained: TrainedModel, damage: Any) -> None:
    with pytest.raises(ModelRejected, match="^cannot be loaded: "):
        Scorer.load(damage(trained.onnx), threshold=trained.threshold)


def test_a_model_trained_on_another_number_of_features_is_refused_with_both_shapes(
    training_rows: npt.NDArray[np.float32],
) -> None:
    narrow = export(fit(training_rows[:, :5], trees=5))
    expected = f"wrong input shape: expects {len(FEATURES)} features, has 5"
    with pytest.raises(ModelRejected, match=expected):
        Scorer.load(narrow, threshold=0.0)
    assert Scorer.load(narrow, features=5, threshold=0.0).features == 5


def _identity_model(*, element: int, width: int | None, output: str) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], [output])],
        "identity",
        [helper.make_tensor_value_info("input", element, [None, width])],
        [helper.make_tensor_value_info(output, element, [None, width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def test_a_model_without_a_scores_output_is_refused() -> None:
    model = _identity_model(element=TensorProto.FLOAT, width=len(FEATURES), output="y")
    with pytest.raises(ModelRejected, match="^wrong output: expects a 'scores' output"):
        Scorer.load(model, threshold=0.0)


def test_a_model_whose_scores_are_not_one_per_row_is_refused() -> None:
    model = _identity_model(element=TensorProto.FLOAT, width=len(FEATURES), output="scores")
    with pytest.raises(ModelRejected, match="^wrong output: 'scores' has shape"):
        Scorer.load(model, threshold=0.0)


def test_a_model_taking_doubles_or_an_unfixed_width_is_refused() -> None:
    doubles = _identity_model(element=TensorProto.DOUBLE, width=len(FEATURES), output="scores")
    with pytest.raises(ModelRejected, match="^wrong input type"):
        Scorer.load(doubles, threshold=0.0)
    unfixed = _identity_model(element=TensorProto.FLOAT, width=None, output="scores")
    with pytest.raises(
        ModelRejected, match=f"^wrong input shape: expects {len(FEATURES)} features, has an unfixed"
    ):
        Scorer.load(unfixed, threshold=0.0)


def test_a_non_finite_threshold_is_refused(trained: TrainedModel) -> None:
    with pytest.raises(ModelRejected, match="threshold"):
        Scorer.load(trained.onnx, threshold=math.nan)
