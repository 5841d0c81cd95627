"""Lane statistics learned from parcels on one partition improve estimates on another."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka.partitioner import murmur2

from streams.avro import decode_status
from tests.harness import WorkerProcess, read_topic, worker_env
from tests.integration.test_worker_end_to_end import produce_file

pytestmark = pytest.mark.integration

HOUR = 3_600_000
BASE = 1_794_355_200_000  # 2026-11-11T00:00:00Z
PARTITIONS = 8


def partition_of(parcel_id: str) -> int:
    return (murmur2(parcel_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def ids_on(partition: int, tag: str, count: int) -> list[str]:
    out, i = [], 0
    while len(out) < count:
        pid = f"{tag}{i:05d}"
        if partition_of(pid) == partition:
            out.append(pid)
        i += 1
    return out


def parcel_events(pid: str, start: int, *, delivered_after_h: float | None) -> list[dict]:
    common = {"parcel_id": pid, "source": "t", "tz_offset_minutes": 480, "location": None}
    events = [
        common
        | {
            "type": "ParcelRegistered",
            "event_id": f"{pid}-r",
            "event_time": start,
            "merchant_id": "m",
            "origin": {"country": "CN", "city": "Hangzhou"},
            "destination": {"country": "ES", "city": "Madrid"},
            "service": "STANDARD",
        },
        common
        | {
            "type": "ParcelScanned",
            "event_id": f"{pid}-p",
            "event_time": start + HOUR,
            "scan": "PICKED_UP",
        },
    ]
    if delivered_after_h is not None:
        events.append(
            common
            | {
                "type": "ParcelScanned",
                "event_id": f"{pid}-d",
                "scan": "DELIVERED",
                "event_time": start + HOUR + int(delivered_after_h * HOUR),
            }
        )
    return events


def write(path: Path, events: list[dict]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    return path


def latest(records, pid: str) -> dict | None:
    found = [decode_status(r.value) for r in records if r.key == pid.encode() and r.value]
    return max(found, key=lambda s: s["version"]) if found else None


async def test_learned_lane_statistics_reach_parcels_on_other_partitions(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("eta") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"))
    status_topic = f"{prefix}tracking.parcel-status"
    probe = ids_on(5, "PROBE", 1)[0]
    teachers = ids_on(0, "TEACH", 40)
    worker = WorkerProcess(env, tmp_path / "w").start()
    try:
        # Before any delivery on the lane: the estimate falls back to the promise.
        produce_file(
            env,
            write(
                tmp_path / "probe1.jsonl", parcel_events(probe, BASE, delivered_after_h=None)[:1]
            ),
        )
        records = await read_topic(
            kafka_bootstrap, status_topic, done=lambda r: latest(r, probe) is not None, timeout=60
        )
        before = latest(records, probe)
        assert before is not None and before["eta_basis"] == "prior"

        # Forty parcels of the same lane, all on partition 0, delivered 40-50 h after pickup.
        teach = []
        for i, pid in enumerate(teachers):
            teach += parcel_events(
                pid, BASE - 200 * HOUR + i * HOUR, delivered_after_h=40 + (i % 11)
            )
        produce_file(env, write(tmp_path / "teach.jsonl", teach))
        await read_topic(
            kafka_bootstrap,
            status_topic,
            done=lambda r: all(
                (s := latest(r, t)) and s["milestone"] == "DELIVERED" for t in teachers
            ),
            timeout=90,
        )

        # The probe (partition 5) is picked up: its estimate now comes from the lane.
        pickup_at = BASE + HOUR

        def learned(records) -> bool:
            status = latest(records, probe)
            return status is not None and status["eta_basis"] not in (None, "prior")

        attempt = 0
        records = []
        while not learned(records) and attempt < 10:
            # Each new event re-estimates; lane stats are flushed in batches, so nudge again.
            attempt += 1
            scan = parcel_events(probe, BASE, delivered_after_h=None)[1]
            scan = scan | {"event_id": f"{probe}-p{attempt}", "event_time": pickup_at + attempt}
            produce_file(env, write(tmp_path / f"probe{attempt}.jsonl", [scan]))
            records = await read_topic(
                kafka_bootstrap,
                status_topic,
                done=lambda r, a=attempt: (
                    (s := latest(r, probe)) is not None and s["version"] >= 1 + a
                ),
                timeout=30,
            )
        after = latest(records, probe)
        assert after is not None and after["eta_basis"] in ("lane", "pair", "service", "global")
        hours = (after["eta_p50"] - pickup_at) / HOUR
        assert 38 <= hours <= 52, hours  # learned 40-50 h, not the 72 h promise
        assert after["on_time_probability"] is not None
    finally:
        worker.stop()
