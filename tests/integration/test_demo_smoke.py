"""`trackbone demo` end to end at a tiny size: the report's sections, agreement, the charts."""

from __future__ import annotations

import json
import os
import re
import shlex
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
    "== Try it yourself",
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
    accounted = report.split("Accounted for (trackbone verify)", 1)[1]
    assert "all agree" in accounted and "MISMATCH" not in accounted
    assert "= applied" in accounted and "lag 0)" in accounted
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
    # the worker's log: plain lines, no timer noise
    worker_log = (tmp_path / "data" / "demo" / "worker" / "worker.log").read_text()
    assert "\x1b[" not in worker_log and "is overlapping" not in worker_log
    # progress lines keep the demo's clock: their seconds never go back
    clock = [float(m) for m in re.findall(r"^\[\s*([0-9.]+) s\]", done.stderr, re.M)]
    assert len(clock) > 3 and clock == sorted(clock), clock

    # every command the demo prints at the end works as printed, without its settings
    tail = report.split("== Try it yourself", 1)[1]
    commands = [line.strip() for line in tail.splitlines() if " query --data-dir " in line]
    assert {c.split("--named ")[1].split()[0] for c in commands} >= {"sla_by_lane", "late_now"}
    plain = {k: v for k, v in env.items() if not k.startswith("TRACKBONE_")}
    outputs = {}
    for command in commands:
        argv = shlex.split(command)
        ran = subprocess.run(
            [*argv, "--format", "json"],
            cwd=REPO,
            env=plain,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, f"{command}:\n{ran.stderr}"
        assert "Traceback" not in ran.stderr
        outputs[argv[argv.index("--named") + 1]] = [json.loads(x) for x in ran.stdout.splitlines()]
    # the same parcel is late by the same hours in the report and in the query
    late_section = report.split("at the end of the feed", 1)[1].split("==", 1)[0]
    count = int(
        re.search(r"([0-9,]+) parcels past their promise", late_section)[1].replace(",", "")
    )
    assert count == len(outputs["late_now"])  # as many late parcels, as of the same time
    for row in outputs["late_now"][:5]:
        assert f"{row['hours_late']:.1f} h" in late_section and row["parcel_id"] in late_section
    # and the SLA table's top lane has the query's figures
    top = outputs["sla_by_lane"][0]
    assert f"{top['on_time_share'] * 100:.1f}%" in report and top["lane"] in report
