"""The chaos benchmark, short: the split topology on PostgreSQL, RabbitMQ and Mosquitto of the
run's own, each of them and a medcloud process killed once while readings stream over HTTP and
MQTT. Nothing a device was told is stored may be missing, nothing stored twice, and every
abnormal episode must raise its alarm. (docs/benchmarks.md has the long run.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench.instances import missing_binaries

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.mark.services
@pytest.mark.timeout(600)
def test_killing_the_broker_the_database_and_a_process_loses_nothing() -> None:
    missing = missing_binaries()
    assert not missing, f"the chaos run needs {missing}"
    command = [
        sys.executable, "-m", "bench.chaos", "--readings", "2000", "--devices", "16",
        "--rabbitmq-kills", "1", "--postgres-kills", "1", "--process-kills", "1",
        "--down-seconds", "1", "--settle", "90",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=CHECKOUT, capture_output=True, text=True, timeout=580, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["kills"] == 3, result["timeline"]
    assert result["acknowledged"] >= 2000
    assert result["stored"] >= result["acknowledged"]
    assert (result["lost"], result["duplicated"], result["refused"]) == (0, 0, 0), result
    assert result["alarms_expected"] > 0
    assert result["alarms_raised"] == result["alarms_expected"], result
    assert (result["alarms_duplicated"], result["alarms_unexpected"]) == (0, 0), result
    assert result["leftover_pids"] == []
