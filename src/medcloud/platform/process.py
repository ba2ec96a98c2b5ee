"""How a long-running medcloud process (`serve`, `worker`) sets up the interpreter itself."""

from __future__ import annotations

import gc


def tune_garbage_collector(young_threshold: int) -> None:
    """Collect cyclic garbage less often, and never walk what start-up loaded.

    Ingest allocates many short-lived containers for every message and request (packets,
    pydantic models, rows, futures). With CPython's default young-generation threshold of 700
    allocations the collector ran hundreds of times a second under load and took a large share
    of a busy process's CPU: raising it to 50,000 took an MQTT run of 200 devices from about
    10,600 to 13,600 readings/s. Nearly all of that garbage is freed by reference counting
    anyway; the collector only has to find cycles. Everything loaded by then (modules, the app,
    settings) lives as long as the process, so `gc.freeze` moves it out of the collector's
    sight. A threshold of 0 or less leaves CPython's defaults.
    """
    if young_threshold <= 0:
        return
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
