"""A parcel whose every event is voided: a tombstone on the status topic, read as removed.

By `trackbone follow` (json and text) and by the example downstream consumer in
``examples/``, which is run here so that it cannot rot.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from load.worker_process import REPO
from streams.cli import main
from tests.harness import WorkerProcess, read_topic, worker_env
from tests.integration.test_worker_end_to_end import produce_file

T0 = 1_794_355_200_000  # 2026-11-11T00:00:00Z


def event(kind: str, pid: str, eid: str, t: int, **fields: object) -> dict[str, object]:
    return {
        "type": kind,
        "event_id": eid,
        "parcel_id": pid,
        "event_time": t,
        "tz_offset_minutes": 480,
        "source": "test-carrier",
        "location": {"country": "CN", "city": "Hangzhou"},
        **fields,
    }


@pytest.mark.timeout(300)
async def test_a_voided_parcel_is_shown_as_removed(
    kafka_bootstrap: str, unique_name, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = unique_name("tomb") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"))
    events = [
        event("ParcelScanned", "KEEP-1", "k1", T0, scan="PICKED_UP"),
        event("ParcelScanned", "GONE-1", "g1", T0, scan="PICKED_UP"),
        event("ParcelScanned", "GONE-1", "g2", T0 + 60_000, scan="ORIGIN_HUB_ARRIVED"),
        event(
            "EventVoided",
            "GONE-1",
            "g3",
            T0 + 120_000,
            voided_event_id="g1",
            reason="DID_NOT_OCCUR",
        ),
        event(
            "EventVoided",
            "GONE-1",
            "g4",
            T0 + 180_000,
            voided_event_id="g2",
            reason="DID_NOT_OCCUR",
        ),
    ]
    scans, voids = tmp_path / "scans.jsonl", tmp_path / "voids.jsonl"
    scans.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[:3]))
    voids.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[3:]))
    topic = f"{prefix}tracking.parcel-status"
    assert "rejected 0" in produce_file(env, scans)
    worker = WorkerProcess(env, tmp_path / "w1").start()
    try:
        await read_topic(  # GONE-1 has a state first, then loses every event
            kafka_bootstrap,
            topic,
            done=lambda recs: any(r.key == b"GONE-1" and r.value for r in recs),
            timeout=120,
        )
        assert "rejected 0" in produce_file(env, voids)
        records = await read_topic(
            kafka_bootstrap,
            topic,
            done=lambda recs: any(r.key == b"GONE-1" and r.value is None for r in recs),
            timeout=120,
        )
        assert any(r.key == b"GONE-1" and r.value is None for r in records)
    finally:
        worker.stop()

    base = ["follow", "--bootstrap", kafka_bootstrap, "--from-beginning", "--until-idle", "3"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACKBONE_TOPIC_PREFIX", prefix)
        assert await asyncio.to_thread(main, [*base, "--format", "json"]) == 0
        lines = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert {"parcel_id": "GONE-1", "removed": True} in lines
        gone = [x for x in lines if x["parcel_id"] == "GONE-1"]
        assert gone[-1] == {"parcel_id": "GONE-1", "removed": True}  # its latest record
        assert any(x.get("parcel_id") == "KEEP-1" and x.get("milestone") for x in lines)
        assert await asyncio.to_thread(main, [*base, "--format", "text"]) == 0
        text = capsys.readouterr().out
        assert "GONE-1" in text and "REMOVED (every event voided)" in text

    example = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "status_consumer.py"),
            "--bootstrap",
            kafka_bootstrap,
            "--topic",
            topic,
            "--until-idle",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert example.returncode == 0, example.stderr
    seen = [orjson.loads(x) for x in example.stdout.splitlines()]
    assert {"parcel_id": "GONE-1", "removed": True} in seen
    keep = [x for x in seen if x["parcel_id"] == "KEEP-1"]
    assert keep and keep[-1]["milestone"] == "PICKED_UP" and keep[-1]["event_count"] == 1
