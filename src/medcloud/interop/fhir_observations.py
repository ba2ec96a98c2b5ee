"""Observations read from the readings store: which types a search needs, and keyset pages.

An Observation has no row: it is one reading, or a blood pressure's parts taken at one instant
by one device (one panel). So pages are cut between whole instants' readings only, or a panel
would fall in two; and a page is positioned by (effective time, id), the order it is sorted in,
never by an offset.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import groupby

from fhir.resources.R4B.observation import Observation

from medcloud.interop import fhir
from medcloud.interop.fhir_search import Token
from medcloud.platform.catalogue import CATALOGUE
from medcloud.platform.directory import ReadingHistory, ReadingQuery, StoredReading

BP_PARTS = frozenset({"systolic_bp", "diastolic_bp", "mean_bp"})
_MICROSECOND = dt.timedelta(microseconds=1)
# Readings one instant can hold for one search: one per series of the patient or device.
_INSTANT_LIMIT = 10_000
# A panel is up to three readings: ask for that many per Observation still wanted.
_READINGS_PER_OBSERVATION = 3
_EXAMPLE_DEVICE = "00000000-0000-4000-8000-000000000000"
_EXAMPLE_AT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

Position = tuple[dt.datetime, str]
"""Where a page ends: the effective time and id of its last Observation."""
Placed = tuple[dt.datetime, Observation]


@functools.cache
def _examples() -> dict[frozenset[str], Observation]:
    """One Observation of each type, and a panel: what their code and category say."""

    def one(*types: str) -> Observation:
        records = [
            fhir.ReadingRecord(t, CATALOGUE[t].minimum, _EXAMPLE_AT, None, _EXAMPLE_DEVICE)
            for t in types
        ]
        return fhir.observations(records)[0]

    found = {frozenset({code}): one(code) for code in CATALOGUE}
    found[BP_PARTS] = one("systolic_bp", "diastolic_bp")
    return found


def wanted(codes: Sequence[Token], categories: Sequence[Token]) -> Callable[[Observation], bool]:
    """Tell an Observation the code and category tokens ask for (each list: any of them)."""

    def matches(observation: Observation) -> bool:
        code = [(c.system, c.code) for c in observation.code.coding or []]
        category = [(c.system, c.code) for k in observation.category or [] for c in k.coding or []]
        return all(
            not tokens or any(t.matches(system, value) for t in tokens for system, value in found)
            for tokens, found in ((codes, code), (categories, category))
        )

    return matches


def types_for(codes: Sequence[Token], categories: Sequence[Token]) -> frozenset[str] | None:
    """The reading types whose Observations the tokens may ask for (None: every type).

    Blood pressure comes whole: a panel is built from its parts, and a lone part is an
    Observation of its own, so the parts are read together or not at all.
    """
    if not codes and not categories:
        return None
    matches = wanted(codes, categories)
    types = {t for kinds, example in _examples().items() if matches(example) for t in kinds}
    if types & BP_PARTS:
        types |= BP_PARTS
    return frozenset(types)


def build(readings: Sequence[StoredReading], *, newest_first: bool) -> list[Placed]:
    """The Observations of whole instants' readings (given in time order), sorted by time and
    id the same way."""
    placed: list[Placed] = []
    for at, group in groupby(readings, key=lambda r: r.at):
        records = [
            fhir.ReadingRecord(r.type, r.value, r.at, r.patient_id, r.device_id) for r in group
        ]
        built = sorted(fhir.observations(records), key=lambda o: o.id or "", reverse=newest_first)
        placed.extend((at, observation) for observation in built)
    return placed


async def page(
    readings: ReadingHistory,
    query: ReadingQuery,
    *,
    matches: Callable[[Observation], bool],
    newest_first: bool,
    count: int,
    after: Position | None,
) -> tuple[list[Placed], bool]:
    """Return up to `count` Observations that `matches`, ordered by (time, id) newest or
    oldest first, after a position; and whether more follow."""
    found: list[Placed] = []
    boundary: dt.datetime | None = None
    if after is not None:
        at, last_id = after
        beyond: Callable[[str], bool] = (
            (lambda i: i < last_id) if newest_first else (lambda i: i > last_id)
        )
        found += [
            (t, o)
            for t, o in build(
                await _instant(readings, query, at, newest_first), newest_first=newest_first
            )
            if beyond(o.id or "") and matches(o)
        ]
        boundary = at
    while len(found) <= count:
        bounded = _beyond(query, boundary, newest_first)
        if bounded is None:
            break
        limit = (count + 1 - len(found)) * _READINGS_PER_OBSERVATION
        batch = await readings.page(bounded, newest_first=newest_first, limit=limit)
        if not batch:
            break
        full = len(batch) == limit
        boundary = batch[-1].at
        if full:
            # The last instant may go on past the limit: read it whole.
            batch = [r for r in batch if r.at != boundary]
            batch += await _instant(readings, query, boundary, newest_first)
        found += [(t, o) for t, o in build(batch, newest_first=newest_first) if matches(o)]
        if not full:
            break
    return found[:count], len(found) > count


async def _instant(
    readings: ReadingHistory, query: ReadingQuery, at: dt.datetime, newest_first: bool
) -> list[StoredReading]:
    start = at if query.start is None else max(query.start, at)
    end = at + _MICROSECOND if query.end is None else min(query.end, at + _MICROSECOND)
    if start >= end:
        return []
    return await readings.page(
        replace(query, start=start, end=end), newest_first=newest_first, limit=_INSTANT_LIMIT
    )


def _beyond(
    query: ReadingQuery, boundary: dt.datetime | None, newest_first: bool
) -> ReadingQuery | None:
    """The query narrowed to the instants after `boundary` in the page's order; None if none."""
    if boundary is None:
        return query
    if newest_first:
        narrowed = replace(query, end=boundary if query.end is None else min(query.end, boundary))
    else:
        after = boundary + _MICROSECOND
        narrowed = replace(query, start=after if query.start is None else max(query.start, after))
    if narrowed.start is not None and narrowed.end is not None and narrowed.start >= narrowed.end:
        return None
    return narrowed
