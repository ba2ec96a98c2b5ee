"""A long-running process collects cyclic garbage less often, and never walks start-up's objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from medcloud.platform.process import tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_the_young_threshold_is_raised_and_what_is_loaded_is_frozen(restored_gc: None) -> None:
    _, middle, old = gc.get_threshold()
    tune_garbage_collector(50_000)
    assert gc.get_threshold() == (50_000, middle, old)
    assert gc.get_freeze_count() > 0


def test_zero_keeps_the_defaults(restored_gc: None) -> None:
    before = gc.get_threshold()
    tune_garbage_collector(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
