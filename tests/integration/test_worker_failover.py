"""Crashes and restarts: state survives, nothing is lost, nothing is applied twice."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from projections.fold import fold_all
from projections.jsonform import InvalidEvent, parse_event
from tests import mixed_input
from tests.harness import WorkerProcess, http_get, read_topic, wait_for, worker_env
from tests.integration.test_worker_end_to_end import (
    diff,
    expected_fold,
    latest_statuses,
    matches,
    produce_file,
)

pytestmark = pytest.mark.integration


def expected_versions(path: Path) -> dict[str, int]:
    events = []
    for line in path.read_bytes().splitlines():
        try:
            events.append(parse_event(orjson.loads(line)))
        except (InvalidEvent, orjson.JSONDecodeError):
            continue
    return {pid: s.version for pid, s in fold_all(events).items() if s.event_count > 0}


def api_versions(worker: WorkerProcess, parcels) -> dict[str, int]:
    versions = {}
    for pid in parcels:
        status, body = http_get(f"{worker.url}/parcels/{pid}")
        assert status == 200, body
        versions[pid] = body["version"]
    return versions


async def test_two_workers_survivor_takes_over_after_sigkill(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("failover") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"))
    mixed = mixed_input.build(parcels=1500, seed=11, tag="FO")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    expected = expected_fold(path)
    half = len(mixed.lines) // 2
    first_half, second_half = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first_half.write_bytes(b"\n".join(mixed.lines[:half]) + b"\n")
    second_half.write_bytes(b"\n".join(mixed.lines[half:]) + b"\n")
    status_topic = f"{prefix}tracking.parcel-status"

    first = WorkerProcess(env, tmp_path / "w1").start()
    second = WorkerProcess(env, tmp_path / "w2").start()
    try:
        # Both own partitions before any input exists: each works on its share.
        wait_for(
            lambda: first.assigned() and second.assigned(),
            timeout=90,
            what="both workers to be assigned partitions",
        )
        produce_file(env, first_half)

        def both_consumed() -> bool:
            m1, m2 = first.metrics(), second.metrics()
            return (
                m1.get("trackbone_events_in_total", 0) > 0
                and m2.get("trackbone_events_in_total", 0) > 0
            )

        wait_for(both_consumed, timeout=90, what="both workers to consume")
        await read_topic(
            kafka_bootstrap,
            status_topic,
            done=lambda recs: len(latest_statuses(recs)) >= len(expected) // 4,
            timeout=120,
        )
        # The second half arrives while the first worker dies: the survivor recovers the
        # dead worker's tables from their changelogs and folds the rest onto them.
        first.kill()
        produce_file(env, second_half)
        first.kill()
        records = await read_topic(
            kafka_bootstrap,
            status_topic,
            done=lambda recs: matches(latest_statuses(recs), expected),
            timeout=180,
        )
        latest = latest_statuses(records)
        assert matches(latest, expected), diff(latest, expected)
        # Each accepted record bumps a parcel's version once: equal versions mean that no
        # record was lost or applied twice across the crash.
        assert api_versions(second, expected) == expected_versions(path)
    finally:
        first.kill()
        second.stop()


async def test_tracking_api_answers_for_both_workers_partitions(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("route") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"))
    mixed = mixed_input.build(parcels=80, seed=5, tag="RT")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    expected = expected_fold(path)
    first = WorkerProcess(env, tmp_path / "w1").start()
    second = WorkerProcess(env, tmp_path / "w2").start()
    try:
        # Produce once both are in the group, so that both own partitions.
        wait_for(
            lambda: first.assigned() and second.assigned(),
            timeout=90,
            what="both workers to be assigned partitions",
        )
        produce_file(env, path)
        await read_topic(
            kafka_bootstrap,
            f"{prefix}tracking.parcel-status",
            done=lambda recs: matches(latest_statuses(recs), expected),
            timeout=120,
        )

        def answers_everywhere() -> bool:
            for worker in (first, second):
                for pid in expected:
                    status, body = http_get(f"{worker.url}/parcels/{pid}")
                    if status != 200 or body["milestone"] != expected[pid]["milestone"]:
                        return False
            return True

        wait_for(answers_everywhere, timeout=60, what="both workers to answer for every parcel")
        applied = [w.metrics()["trackbone_events_applied_total"] for w in (first, second)]
        assert all(a > 0 for a in applied), f"one worker owned no partition: {applied}"
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("how", ["clean", "sigkill"])
async def test_restart_keeps_state_and_applies_nothing_twice(
    kafka_bootstrap: str, unique_name, tmp_path: Path, how: str
) -> None:
    prefix = unique_name(f"restart-{how}") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"))
    mixed = mixed_input.build(parcels=400, seed=3, tag="RS")
    half = len(mixed.lines) // 2
    first_half = tmp_path / "first.jsonl"
    first_half.write_bytes(b"\n".join(mixed.lines[:half]) + b"\n")
    whole = mixed_input.write(tmp_path / "whole.jsonl", mixed)
    second_half = tmp_path / "second.jsonl"
    second_half.write_bytes(b"\n".join(mixed.lines[half:]) + b"\n")
    status_topic = f"{prefix}tracking.parcel-status"
    data_dir = tmp_path / "w"

    produce_file(env, first_half)
    worker = WorkerProcess(env, data_dir).start()
    expected_first = expected_fold(first_half)
    await read_topic(
        kafka_bootstrap,
        status_topic,
        done=lambda recs: matches(latest_statuses(recs), expected_first),
        timeout=120,
    )
    applied_first = worker.metrics()["trackbone_events_applied_total"]
    if how == "clean":
        worker.stop()
    else:
        worker.kill()

    produce_file(env, second_half)
    worker = WorkerProcess(env, data_dir).start()
    try:
        expected = expected_fold(whole)
        records = await read_topic(
            kafka_bootstrap,
            status_topic,
            done=lambda recs: matches(latest_statuses(recs), expected),
            timeout=120,
        )
        latest = latest_statuses(records)
        assert matches(latest, expected), diff(latest, expected)
        versions = expected_versions(whole)
        assert api_versions(worker, expected) == versions
        applied_second = worker.metrics()["trackbone_events_applied_total"]
        assert applied_first + applied_second == sum(versions.values()), (
            applied_first,
            applied_second,
        )
    finally:
        worker.stop()
