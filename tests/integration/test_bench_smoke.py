"""`trackbone bench` runs end to end on a small input and reports every promised key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from load.worker_process import REPO
from tests.harness import worker_env

pytestmark = pytest.mark.integration

KEYS = {
    "events", "worker_events_per_s", "raw_events_per_s", "worker_over_raw",
    "domain_us_per_event", "workers_2_over_1", "pipeline_events_per_s",
    "worker_sink_over_worker", "status_latency_ms_p50", "status_latency_ms_p99",
    "clickhouse_visible_ms_p99", "replay_events_per_s", "fold_events_per_s", "sink_rows_per_s",
    "machine", "goals", "worker_cpu_us_per_event", "latency_worker_cpu_us_per_event",
}  # fmt: skip


@pytest.mark.timeout(360)
def test_bench_smoke(kafka_bootstrap: str, unique_name, tmp_path: Path) -> None:
    env = worker_env(kafka_bootstrap, "", unique_name("app"))
    out = tmp_path / "bench"
    run = subprocess.run(
        [
            sys.executable, "-m", "streams.cli", "bench", "--events", "3000", "--json",
            "--latency-seconds", "3", "--out", str(out),
        ],
        cwd=REPO, env=env, capture_output=True, timeout=350,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    result = orjson.loads(run.stdout)
    assert result.keys() >= KEYS
    assert result["events"] == 3000
    assert result["raw_events_per_s"] > 0
    assert result["raw"]["events"] == 3000  # the raw loop did every event's work
    assert result["workers_1"]["complete"] and result["workers_2"]["complete"]
    assert result["worker_events_per_s"] > 0
    assert result["domain_us_per_event"] > 0
    assert result["worker_cpu_us_per_event"] > 0  # the worker's own CPU, read from /metrics
    assert result["latency_worker_cpu_us_per_event"] > 0
    assert result["replay_events_per_s"] > 0
    assert result["fold_events_per_s"] > 0
    # the sink process drained the pipeline's outputs on its own
    assert result["sink_rows_per_s"] > 0, result["notes"]
    assert result["sink_drain"]["rows"] > result["parcels"]
    assert result["machine"]["cpu_count"] >= 1
    assert set(result["goals"]) == {
        "worker_events_per_s", "worker_over_raw", "domain_us_per_event", "sink_rows_per_s",
        "worker_sink_over_worker", "clickhouse_visible_ms_p99", "status_latency_ms_p99",
    }  # fmt: skip
    for goal in result["goals"].values():
        assert goal["met"] in (True, False, None)
    if result["latency_plot"] is not None:
        assert Path(result["latency_plot"]).stat().st_size > 0
