"""`trackbone sink` alone fills ClickHouse from the worker's outputs; `trackbone query` finds it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from load.worker_process import REPO
from tests import mixed_input
from tests.harness import SinkProcess, WorkerProcess, read_topic, wait_for, worker_env
from tests.integration.test_worker_end_to_end import (
    expected_fold,
    latest_statuses,
    matches,
    produce_file,
)

pytestmark = pytest.mark.integration


def trackbone_query(env: dict[str, str], data_dir: Path, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "query", sql, "--format", "json"],
        cwd=REPO,
        env=env | {"TRACKBONE_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(400)
async def test_the_sink_process_alone_fills_clickhouse_with_the_workers_statuses(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("sink") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"), TRACKBONE_SINK_FLUSH_S="0.2")
    mixed = mixed_input.build(parcels=80, seed=33, tag="SNK")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    expected = expected_fold(path)
    produce_file(env, path)

    # The worker runs first and writes no ClickHouse: its outputs wait in Kafka.
    worker = WorkerProcess(env, tmp_path / "w").start()
    try:
        records = await read_topic(
            kafka_bootstrap,
            f"{prefix}tracking.parcel-status",
            done=lambda recs: matches(latest_statuses(recs), expected),
            timeout=180,
        )
    finally:
        assert worker.stop() == 0
    statuses = latest_statuses(records)
    assert matches(statuses, expected)
    assert not (tmp_path / "w" / "clickhouse").exists()  # the worker never opened an engine

    data_dir = tmp_path / "sink"
    sink = SinkProcess(env, data_dir).start()
    try:
        want = sorted((p, s["version"], s["milestone"]) for p, s in statuses.items())
        events = sum(s["event_count"] for s in statuses.values())

        def in_clickhouse() -> bool:
            state = sink.query(
                "SELECT parcel_id, version, toString(milestone) AS milestone"
                " FROM parcel_state FINAL ORDER BY parcel_id"
            )
            (row,) = sink.query("SELECT count() AS n FROM parcel_events FINAL")
            got = [(r["parcel_id"], r["version"], r["milestone"]) for r in state]
            return got == want and row["n"] == events

        wait_for(in_clickhouse, timeout=120, what="the sink to store every status and event")
        stats = sink.stats()["sink"]
        assert stats["rows_written"] >= len(statuses) + events
        assert stats["rows_by_table"]["parcel_state"] >= len(statuses)
        assert stats["write_failures"] == 0
        wait_for(
            lambda: sink.stats()["sink"]["consumer_lag"] == 0, timeout=60, what="zero sink lag"
        )
        metrics = sink.client.metrics()
        assert metrics['trackbone_sink_rows_total{table="parcel_events"}'] >= events
        assert metrics["trackbone_sink_batches_total"] >= 1

        # `trackbone query` on the sink's data dir goes through the running sink (the
        # embedded engine allows one process per data dir).
        owner = json.loads((data_dir / "sink.json").read_text())
        assert owner["pid"] == sink.proc.pid and owner["web_url"].endswith(f":{sink.port}")
        done = trackbone_query(env, data_dir, "SELECT count() AS n FROM parcel_state FINAL")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"n": len(statuses)}
        refused = trackbone_query(env, data_dir, "SELECT 1; DROP TABLE parcel_state")
        assert refused.returncode == 2 and "refused" in refused.stderr
    finally:
        assert sink.stop() == 0
    # Gone: the owner file with it; `trackbone query` now opens the engine itself.
    assert not (data_dir / "sink.json").exists()
    done = trackbone_query(env, data_dir, "SELECT count() AS n FROM parcel_state FINAL")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"n": len(statuses)}


@pytest.mark.timeout(300)
def test_a_stale_owner_file_is_ignored(kafka_bootstrap: str, unique_name, tmp_path: Path) -> None:
    env = worker_env(kafka_bootstrap, unique_name("stale") + ".", unique_name("app"))
    data_dir = tmp_path / "sink"
    sink = SinkProcess(env, data_dir).start()
    sink.kill()  # SIGKILL: no chance to remove sink.json
    assert (data_dir / "sink.json").exists()
    done = trackbone_query(env, data_dir, "SELECT count() AS n FROM parcel_state FINAL")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"n": 0}
