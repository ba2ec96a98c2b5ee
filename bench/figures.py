"""What the benchmarks compute from their samples; shared so every run reports alike."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from bench.deployment import Usage


def percentile_ms(values: Sequence[float], share: float) -> float | None:
    """The value below which `share` of the samples fall, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000, 1)


def report(
    args: argparse.Namespace,
    *,
    elapsed: float,
    accepted: int,
    stored: int,
    latencies: list[float],
    extra: dict[str, Any],
    usage: Usage,
    baseline: tuple[int, float] | None,
) -> dict[str, Any]:
    """The JSON an ingest run prints, whichever transport it drove (no COPY baseline on
    SQLite)."""
    copied, copy_per_s = baseline or (None, 0.0)
    stored_per_s = stored / elapsed
    return {
        "benchmark": "ingest",
        "transport": args.transport,
        "devices": args.devices,
        "seconds": round(elapsed, 1),
        "readings_accepted": accepted,
        "readings_stored": stored,
        "readings_per_s_accepted": round(accepted / elapsed),
        "readings_per_s_stored": round(stored_per_s),
        **extra,
        "latency_p50_ms": percentile_ms(latencies, 0.50),
        "latency_p99_ms": percentile_ms(latencies, 0.99),
        "server_cpu_seconds": round(usage.cpu_seconds, 1),
        "server_cpu_cores": round(usage.cpu_seconds / elapsed, 2),
        "server_peak_rss_mb": round(usage.peak_rss_mb, 1),
        "copy_baseline_rows": copied,
        "copy_baseline_rows_per_s": round(copy_per_s) if baseline else None,
        "share_of_copy": round(stored_per_s / copy_per_s, 2) if copy_per_s else None,
    }
