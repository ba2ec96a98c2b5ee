"""FHIR search parameters as the /fhir/r4 API reads them: strictly, dates at their precision."""

from __future__ import annotations

import datetime as dt

import pytest

from medcloud.interop import fhir_observations
from medcloud.interop.fhir_search import InvalidSearch, Token, observation_search, patient_search

UTC = dt.UTC


@pytest.mark.parametrize(
    ("dates", "start", "end"),
    [
        (["2026"], dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)),
        (["eq2026-02"], dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 3, 1, tzinfo=UTC)),
        (["ge2026-02-03"], dt.datetime(2026, 2, 3, tzinfo=UTC), None),
        (["gt2026-02-03"], dt.datetime(2026, 2, 4, tzinfo=UTC), None),
        (["lt2026-02-03"], None, dt.datetime(2026, 2, 3, tzinfo=UTC)),
        (["le2026-02-03"], None, dt.datetime(2026, 2, 4, tzinfo=UTC)),
        (
            ["ge2026-02-03T10:00:00+01:00", "lt2026-02-03T10:30Z"],
            dt.datetime(2026, 2, 3, 9, tzinfo=UTC),
            dt.datetime(2026, 2, 3, 10, 30, tzinfo=UTC),
        ),
        (
            ["le2026-02-03T10:00:00.5Z"],
            None,
            dt.datetime(2026, 2, 3, 10, 0, 0, 600_000, tzinfo=UTC),
        ),
    ],
)
def test_dates_cover_the_range_their_precision_names(
    dates: list[str], start: dt.datetime | None, end: dt.datetime | None
) -> None:
    search = observation_search([("patient", "Patient/p1"), *(("date", d) for d in dates)])
    assert (search.start, search.end) == (start, end)


@pytest.mark.parametrize(
    "params",
    [
        [("patient", "p1"), ("colour", "blue")],
        [("patient", "p1"), ("date", "ap2026")],
        [("patient", "p1"), ("date", "2026-13")],
        [("patient", "p1"), ("_sort", "code")],
        [("patient", "p1"), ("_count", "0")],
        [("patient", "Device/d1")],
        [("patient", "p1"), ("patient", "p2")],
        [("patient", "p1"), ("subject", "p2")],
        [("code", "8867-4")],
    ],
)
def test_a_search_it_cannot_run_is_refused_naming_why(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidSearch):
        observation_search(params)


def test_references_tokens_and_paging_are_read() -> None:
    search = observation_search(
        [
            ("subject", "https://ehr.example/fhir/Patient/p1"),
            ("code", "http://loinc.org|8867-4,150456"),
            ("_count", "5000"),
            ("_sort", "date"),
        ]
    )
    assert search.patient_id == "p1"
    assert search.codes == (Token("http://loinc.org", "8867-4"), Token(None, "150456"))
    assert search.paging.count == 1000
    assert not search.newest_first
    found = patient_search([("identifier", "|P-1"), ("name", " Doe ")])
    assert found.identifier == Token("", "P-1")
    assert found.name == "Doe"


def test_blood_pressure_parts_are_read_together_for_any_code_of_theirs() -> None:
    parts = fhir_observations.BP_PARTS
    assert fhir_observations.types_for([Token(None, "85354-9")], []) == parts
    assert fhir_observations.types_for([Token("http://loinc.org", "8480-6")], []) == parts
    assert fhir_observations.types_for([Token(None, "8867-4")], []) == frozenset({"heart_rate"})
    assert fhir_observations.types_for([], [Token(None, "laboratory")]) == frozenset({"glucose"})
    assert fhir_observations.types_for([], []) is None
