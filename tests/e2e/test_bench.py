"""The ingest benchmark runs end to end and counts what it claims: a short run of each transport.

Speed is not asserted (only the benchmark measures it); what is checked is that every reading
the devices were told is stored is in the table, so the figures the benchmark prints mean what
they say.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mosquitto import tools

CHECKOUT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> dict[str, object]:
    command = [sys.executable, "-m", "bench.ingest", "--seconds", "2", *args]
    done = subprocess.run(
        command, cwd=CHECKOUT, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.services
@pytest.mark.timeout(300)
@pytest.mark.parametrize("instants", [1, 3])
def test_an_mqtt_run_stores_every_reading_it_counts_as_accepted(instants: int) -> None:
    tools()  # fails under CI, skips elsewhere, when Mosquitto is missing
    result = bench("--transport", "mqtt", "--devices", "3", "--instants", str(instants))
    assert result["messages_sent"] == result["messages_acknowledged"]
    assert result["messages_refused"] == 0
    assert result["readings_per_message"] == 4 * instants
    readings = int(str(result["messages_acknowledged"])) * 4 * instants
    assert readings > 0
    assert result["readings_accepted"] == result["readings_stored"] == readings


@pytest.mark.services
@pytest.mark.timeout(300)
def test_an_http_run_stores_every_reading_it_counts_as_accepted() -> None:
    result = bench("--transport", "http", "--devices", "2", "--batch", "10")
    assert int(str(result["readings_accepted"])) > 0
    assert result["readings_accepted"] == result["readings_stored"]


@pytest.mark.timeout(300)
def test_a_single_reading_run_on_sqlite_counts_what_it_stored_beside_its_baseline() -> None:
    result = bench(
        "--mode", "single", "--deployment", "embedded", "--devices", "2", "--baseline-seconds", "1"
    )
    assert result["readings_per_request"] == 4
    assert int(str(result["readings_accepted"])) > 0
    assert result["readings_accepted"] == result["readings_stored"]
    assert int(str(result["baseline_requests_per_s"])) > 0
    assert result["copy_baseline_rows_per_s"] is None


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "deployment", ["embedded", pytest.param("postgres", marks=pytest.mark.services)]
)
def test_a_store_run_counts_every_reading_it_loaded_and_times_each_read(deployment: str) -> None:
    command = [sys.executable, "-m", "bench.store", "--days", "0.02", "--repeat", "3"]
    done = subprocess.run(
        [*command, "--deployment", deployment],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["readings_stored"] == int(0.02 * 86_400) * 4
    assert 0 < result["bytes_per_reading"] < 10_000
    for read in ("chart_7d", "page", "latest"):
        assert result[f"{read}_p50_ms"] <= result[f"{read}_p99_ms"]
