"""The anomaly model registry: train on stored readings, register, and activate only models
that load and fit; a refused model is recorded with its reason and the active one stays."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import numpy as np
import structlog

from medcloud.analytics import anomaly, repository
from medcloud.analytics.models import AnomalyModel
from medcloud.analytics.schemas import ModelRead
from medcloud.platform.directory import ReadingHistory
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)


async def stored_features(
    *,
    readings: ReadingHistory,
    start: dt.datetime,
    end: dt.datetime,
    organisation_id: str | None,
) -> np.ndarray[Any, Any]:
    """Return the feature rows of every patient's stored readings in [start, end), each
    normalised against that patient's own baseline."""
    rows = []
    for patient_id in await readings.patients(organisation_id, start, end):
        series = {
            vital: await readings.series(patient_id, vital, start, end) for vital in anomaly.VITALS
        }
        features, _ = anomaly.featurise(series, anomaly.baseline(series))
        if len(features):
            rows.append(features)
    if not rows:
        return np.empty((0, len(anomaly.FEATURES)), dtype=np.float32)
    return np.concatenate(rows)


async def train_model(
    *,
    uow_factory: UnitOfWorkFactory,
    readings: ReadingHistory,
    start: dt.datetime,
    end: dt.datetime,
    organisation_id: str | None = None,
    seed: int = 0,
) -> ModelRead:
    """Train on stored readings, evaluate on simulated injected anomalies, register and
    activate; raise ValueError when there is too little to train on."""
    features = await stored_features(
        readings=readings, start=start, end=end, organisation_id=organisation_id
    )
    if len(features) < anomaly.MIN_TRAINING_WINDOWS:
        raise ValueError(
            f"{len(features)} windows of stored readings in that range; "
            f"training needs at least {anomaly.MIN_TRAINING_WINDOWS}"
        )
    trained = await asyncio.to_thread(anomaly.train, features, seed=seed)
    return await register_model(
        uow_factory=uow_factory,
        onnx=trained.onnx,
        threshold=trained.threshold,
        trained_windows=trained.trained_windows,
        evaluation=trained.evaluation,
        trained_from=start,
        trained_to=end,
        organisation_id=organisation_id,
    )


async def register_model(
    *,
    uow_factory: UnitOfWorkFactory,
    onnx: bytes,
    threshold: float,
    trained_windows: int = 0,
    evaluation: anomaly.Evaluation | None = None,
    trained_from: dt.datetime | None = None,
    trained_to: dt.datetime | None = None,
    organisation_id: str | None = None,
) -> ModelRead:
    """Record a model; activate it if it loads with the input shape the worker feeds it.

    A refused model is recorded (status `refused`, with the reason) and ModelRejected raised;
    the model active before stays active.
    """
    error: str | None = None
    try:
        scorer = anomaly.Scorer.load(onnx, features=len(anomaly.FEATURES), threshold=threshold)
        if evaluation is None:
            evaluation = await asyncio.to_thread(anomaly.evaluate, scorer)
    except anomaly.ModelRejected as exc:
        error = str(exc)
    async with uow_factory() as uow:
        now = uow.clock.now()
        row = AnomalyModel(
            version=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
            organisation_id=organisation_id,
            created_at=now,
            trained_from=trained_from,
            trained_to=trained_to,
            trained_windows=trained_windows,
            features=len(anomaly.FEATURES),
            threshold=threshold,
            precision=evaluation.precision if evaluation else 0.0,
            recall=evaluation.recall if evaluation else 0.0,
            onnx=onnx,
            active=False,
            status="refused" if error else "active",
            error=error[:400] if error else None,
        )
        uow.session.add(row)
        await uow.session.flush()
        if error is None:
            await repository.activate_model(uow.session, row.version)
            row.active = True
        await uow.commit()
    if error is not None:
        log.error("anomaly.model.refused", version=row.version, reason=error)
        raise anomaly.ModelRejected(error)
    log.info("anomaly.model.activated", version=row.version)
    return ModelRead.model_validate(row)


async def list_models(*, uow_factory: UnitOfWorkFactory) -> list[ModelRead]:
    """Return every registered model, newest first."""
    async with uow_factory() as uow:
        return [ModelRead.model_validate(m) for m in await repository.models(uow.session)]
