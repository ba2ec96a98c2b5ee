"""The analytics context's published interface: alarms and NEWS2 scores, read back by reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.analytics import repository
from medcloud.analytics.models import News2Score
from medcloud.platform.directory import AlarmFact, ScoreFact

SCORES_PER_QUERY = 500
"""Patients whose scores one statement reads: keeps the `IN` list within every driver's limit."""


class SqlAlarmHistory:
    """Read alarms and scores from the analytics tables."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def alarms(
        self,
        organisation_id: str,
        start: dt.datetime,
        end: dt.datetime,
        patients: frozenset[str] | None,
    ) -> list[AlarmFact]:
        """Return the alarms raised in [start, end), of these patients only unless None."""
        async with self._sessions() as session:
            rows = await repository.alarms_between(session, organisation_id, start, end, patients)
        return [
            AlarmFact(
                id=row.id,
                patient_id=row.patient_id,
                priority=row.severity,
                raised_at=row.raised_at,
                acknowledged_at=row.acknowledged_at,
                escalations=row.escalation_count,
            )
            for row in sorted(rows, key=lambda alarm: (alarm.raised_at, alarm.id))
        ]

    async def scores(
        self, patient_ids: Sequence[str], start: dt.datetime, end: dt.datetime
    ) -> list[ScoreFact]:
        """Return the patients' NEWS2 scores in [start, end), oldest first."""
        found: list[ScoreFact] = []
        async with self._sessions() as session:
            for first in range(0, len(patient_ids), SCORES_PER_QUERY):
                chunk = list(patient_ids[first : first + SCORES_PER_QUERY])
                query = select(News2Score.patient_id, News2Score.scored_at, News2Score.score).where(
                    News2Score.patient_id.in_(chunk),
                    News2Score.scored_at >= start,
                    News2Score.scored_at < end,
                )
                found += [ScoreFact(p, at, score) for p, at, score in await session.execute(query)]
        return sorted(found, key=lambda fact: (fact.scored_at, fact.patient_id))
