"""NEWS2 from stored vitals: which readings it takes, and scores along backfilled readings for
the chart. The live path (`evaluation.py`) scores from each patient's latest values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from medcloud.analytics import news2, repository
from medcloud.config import Settings
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.uow import UnitOfWork

# Measurement types NEWS2 reads from monitors, by the name of the NEWS2 parameter.
NEWS2_MEASURED = {
    "respiratory_rate": "respiratory_rate",
    "spo2": "spo2",
    "systolic_bp": "systolic_bp",
    "pulse": "heart_rate",
    "temperature": "temperature",
}
NEWS2_CHARTED = ("consciousness", "oxygen_flow")
NEWS2_INPUTS = frozenset((*NEWS2_MEASURED.values(), *NEWS2_CHARTED))
NEWS2_LATEST = "news2"
"""The newest score is kept among a patient's latest values under this name."""
NEWS2_STORE_EVERY_SECONDS = 60.0
"""An unchanged score is stored again only this often: a chart needs no point per second."""


def news2_inputs(
    latest: dict[str, tuple[dt.datetime, float]],
    *,
    now: dt.datetime,
    window: dt.timedelta,
    charted: dt.timedelta,
) -> news2.Vitals | None:
    """Gather NEWS2's observations (scale 1) from a patient's latest values; None while any
    measured vital or consciousness is missing from its window (a partial NEWS2 would
    understate the risk).

    No oxygen flow charted within its window counts as breathing air.
    """
    values: dict[str, float] = {}
    for parameter, code in NEWS2_MEASURED.items():
        held = latest.get(code)
        if held is None or held[0] < now - window:
            return None
        values[parameter] = held[1]
    consciousness = latest.get("consciousness")
    if consciousness is None or consciousness[0] < now - charted:
        return None
    oxygen = latest.get("oxygen_flow")
    on_oxygen = oxygen is not None and oxygen[0] >= now - charted and oxygen[1] > 0
    return news2.Vitals(
        respiratory_rate=values["respiratory_rate"],
        spo2=values["spo2"],
        spo2_scale=1,
        supplemental_oxygen=on_oxygen,
        systolic_bp=values["systolic_bp"],
        pulse=values["pulse"],
        consciousness=news2.consciousness_from_code(round(consciousness[1])),
        temperature=values["temperature"],
    )


async def score_history(
    uow: UnitOfWork,
    settings: Settings,
    batches: Sequence[ReadingsCollected],
    fresh_after: dt.datetime,
) -> None:
    """Score NEWS2 along backfilled readings, for the patient's chart: it pages no one.

    Only the batch's own readings are used (an upload of a night's vitals carries all it needs);
    a score is kept where it changes, and at most once a minute where it does not.
    """
    rows: list[dict[str, Any]] = []
    scales: dict[str, int] = {}
    window = dt.timedelta(seconds=settings.alerts.news2_window_seconds)
    charted = dt.timedelta(seconds=settings.alerts.news2_charted_window_seconds)
    for batch in batches:
        late = [s for s in batch.samples if s.timestamp < fresh_after]
        if batch.patient_id is None or not any(NEWS2_INPUTS & s.measurements.keys() for s in late):
            continue
        if batch.patient_id not in scales:
            found = await repository.spo2_scales(uow.session, [batch.patient_id])
            scales[batch.patient_id] = found.get(batch.patient_id, 1)
        scale = scales[batch.patient_id]
        latest: dict[str, tuple[dt.datetime, float]] = {}
        previous: tuple[dt.datetime, int] | None = None
        for sample in sorted(late, key=lambda s: s.timestamp):
            for code, value in sample.measurements.items():
                latest[code] = (sample.timestamp, value)
            observed = news2_inputs(latest, now=sample.timestamp, window=window, charted=charted)
            if observed is None:
                continue
            result = news2.score(replace(observed, spo2_scale=scale))
            if (
                previous is not None
                and previous[1] == result.score
                and ((sample.timestamp - previous[0]).total_seconds() < NEWS2_STORE_EVERY_SECONDS)
            ):
                continue
            previous = (sample.timestamp, result.score)
            rows.append(
                {
                    "organisation_id": batch.organisation_id,
                    "patient_id": batch.patient_id,
                    "scored_at": sample.timestamp,
                    "score": result.score,
                    "risk": result.risk.value,
                    "components": orjson.dumps(result.components).decode(),
                    "spo2_scale": scale,
                    "live": False,
                }
            )
    await repository.insert_scores(uow.session, rows)
