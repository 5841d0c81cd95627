"""`trackbone demo` end to end at a tiny size: the report's sections, agreement, the charts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from load.worker_process import REPO

pytestmark = pytest.mark.integration

SECTIONS = (
    "== Totals",
    "== SLA by lane and service",
    "== On-time share against the promise",
    "== Slowest hubs",
    "== Customs delays by country",
    "== Parcels late right now",
    "== Where is my parcel?",
    "== Status topic vs ClickHouse",
    "== Charts",
)
CHARTS = ("on_time_by_lane.png", "transit_times.png", "throughput.png")


@pytest.mark.timeout(240)
def test_demo_runs_end_to_end_and_reports_from_the_outputs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKBONE_")}
    env |= {
        "TRACKBONE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKBONE_DATA_DIR": str(tmp_path / "data"),
        "TRACKBONE_SINK_FLUSH_S": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    if "TRACKBONE_KAFKA_HOME" in os.environ:
        env["TRACKBONE_KAFKA_HOME"] = os.environ["TRACKBONE_KAFKA_HOME"]
    out_dir = tmp_path / "charts"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "demo",
            "--parcels",
            "150",
            "--seed",
            "5",
            "--rate",
            "0",
            "--out",
            str(out_dir),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    report = done.stdout
    for title in SECTIONS:
        assert title in report, f"missing section {title!r} in:\n{report}"
    assert "-> they agree" in report
    assert "caught up:" in done.stderr
    # the sample parcel's timeline comes from the tracking API, in local times
    assert "registered by" in report and "milestone" in report
    for name in CHARTS:
        path = out_dir / name
        assert path.is_file() and path.stat().st_size > 1000, path
        assert str(path) in report
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the worker and the sink it started are gone, and its topics were deleted
    assert "worker: stopped (exit code 0)" in done.stderr
    assert "sink: stopped (exit code 0)" in done.stderr
    assert "deleted this run's" in done.stderr
