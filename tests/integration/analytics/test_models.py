"""The anomaly model registry: a model that loads and fits becomes the one that scores; a corrupt
or misshapen one is refused with its reason, and the model active before keeps scoring."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import update

from medcloud.analytics import anomaly, modelling
from medcloud.analytics.advisories import ModelCache, _current_scorer
from medcloud.analytics.models import AnomalyModel
from tests.integration.analytics.helpers import runtime
from tests.support.client import Api


@pytest.fixture(scope="module")
def trained() -> anomaly.TrainedModel:
    """A model trained on a small simulation (the same for every test of this module)."""
    rows = anomaly.simulated_training_set(patients=6, hours=6, seed=3)
    return anomaly.train(rows, seed=3)


async def test_a_model_that_loads_is_registered_and_activated(
    api: Api, trained: anomaly.TrainedModel
) -> None:
    uow = runtime(api).uow
    model = await modelling.register_model(
        uow_factory=uow,
        onnx=trained.onnx,
        threshold=trained.threshold,
        trained_windows=trained.trained_windows,
        evaluation=trained.evaluation,
    )
    assert (model.active, model.status, model.features) == (True, "active", len(anomaly.FEATURES))
    assert 0 < model.precision <= 1 and 0 < model.recall <= 1
    assert [m.version for m in await modelling.list_models(uow_factory=uow)] == [model.version]


async def test_a_corrupt_model_is_refused_and_the_previous_one_keeps_scoring(
    api: Api, trained: anomaly.TrainedModel
) -> None:
    rt = runtime(api)
    good = await modelling.register_model(
        uow_factory=rt.uow, onnx=trained.onnx, threshold=trained.threshold
    )
    cache = ModelCache()
    async with rt.read_sessions() as session:
        scorer = await _current_scorer(session, cache)
    assert scorer is not None and cache.version == good.version

    with pytest.raises(anomaly.ModelRejected, match="cannot be loaded"):
        await modelling.register_model(
            uow_factory=rt.uow, onnx=trained.onnx[: len(trained.onnx) // 2], threshold=0.1
        )
    models = await modelling.list_models(uow_factory=rt.uow)
    refused = next(m for m in models if m.version != good.version)
    assert (refused.status, refused.active) == ("refused", False)
    assert refused.error and "cannot be loaded" in refused.error
    assert [m.version for m in models if m.active] == [good.version]

    # A model whose stored bytes were damaged after it was activated is refused when a worker
    # comes to load it, and the model already in memory goes on scoring.
    async with rt.write_sessions() as session, session.begin():
        await session.execute(update(AnomalyModel).values(active=False))
        session.add(
            AnomalyModel(
                version="damaged",
                created_at=dt.datetime.now(dt.UTC),
                trained_windows=0,
                features=len(anomaly.FEATURES),
                threshold=0.1,
                precision=0.0,
                recall=0.0,
                onnx=b"not an onnx model",
                active=True,
                status="active",
            )
        )
    async with rt.read_sessions() as session:
        still = await _current_scorer(session, cache)
    assert still is scorer and cache.version == good.version and "damaged" in cache.refused
    rows = np.zeros((2, len(anomaly.FEATURES)), dtype=np.float32)
    assert still.scores(rows).shape == (2,)


async def test_a_model_of_the_wrong_input_shape_is_refused(api: Api) -> None:
    rows = anomaly.simulated_training_set(patients=3, hours=4, seed=5)[:, :5]
    narrow = anomaly.export(anomaly.fit(rows, seed=5))
    with pytest.raises(anomaly.ModelRejected, match="wrong input shape"):
        await modelling.register_model(uow_factory=runtime(api).uow, onnx=narrow, threshold=0.1)
    assert [m.active for m in await modelling.list_models(uow_factory=runtime(api).uow)] == [False]
