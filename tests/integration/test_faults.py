"""Faults injected while events flow; after each, nothing is lost and nothing counts twice.

Every test ends in `tests.fault_kit.settle`: ``trackbone verify`` agrees (the accounting
identity per partition, dead letters by source offset, status versions, ClickHouse
where a sink runs) and the latest statuses equal ``trackbone fold`` of the input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from load.worker_process import REPO
from projections.events import Scan
from streams import avro
from streams.broker import LocalBroker, pid_alive
from streams.settings import Settings
from tests import mixed_input
from tests.fault_kit import Feed, settle
from tests.harness import SinkProcess, WorkerProcess, produce_raw, wait_for, worker_env
from tests.integration.test_worker_end_to_end import expected_fold
from tests.unit.test_fold_rules import scan

pytestmark = pytest.mark.integration


def scenario(tmp_path: Path, tag: str, parcels: int = 300, seed: int = 7) -> tuple[list, dict]:
    mixed = mixed_input.build(parcels=parcels, seed=seed, tag=tag)
    path = mixed_input.write(tmp_path / "input.jsonl", mixed)
    return mixed.lines, expected_fold(path)


def events_in(worker: WorkerProcess) -> float:
    try:
        return worker.metrics().get("trackbone_events_in_total", 0)
    except OSError:
        return 0


def mid_stream(feed: Feed, *workers: WorkerProcess) -> None:
    """Wait until the workers have folded some input and more is still to come."""
    wait_for(
        lambda: all(events_in(w) > 0 for w in workers) and feed.sent_share() > 0.2,
        timeout=120,
        what="the workers to be folding while the feed still runs",
        every=0.05,
    )
    assert feed.sent_share() < 1, "the feed ended before the fault: make it longer"


def test_worker_sigkill_mid_batch_then_restarted(kafka_bootstrap, unique_name, tmp_path) -> None:
    env = worker_env(kafka_bootstrap, unique_name("kill1") + ".", unique_name("app"))
    lines, expected = scenario(tmp_path, "K1")
    worker = WorkerProcess(env, tmp_path / "w").start()
    feed = Feed(env, kafka_bootstrap, lines, pause_s=0.3).start()
    try:
        mid_stream(feed, worker)
        worker.kill()  # SIGKILL: no flush, no commit
        worker = WorkerProcess(env, tmp_path / "w").start()  # same data dir: its tables
        feed.join()
        settle(env, kafka_bootstrap, expected)
    finally:
        worker.kill()


def test_one_of_two_workers_killed_the_other_takes_over(
    kafka_bootstrap, unique_name, tmp_path
) -> None:
    env = worker_env(kafka_bootstrap, unique_name("kill2") + ".", unique_name("app"))
    lines, expected = scenario(tmp_path, "K2")
    first = WorkerProcess(env, tmp_path / "w1").start()
    second = WorkerProcess(env, tmp_path / "w2").start()
    try:
        wait_for(lambda: first.assigned() and second.assigned(), timeout=90, what="assignment")
        feed = Feed(env, kafka_bootstrap, lines, pause_s=0.3).start()
        mid_stream(feed, first, second)
        first.kill()
        feed.join()
        settle(env, kafka_bootstrap, expected)
    finally:
        first.kill()
        second.kill()


def test_a_second_worker_joins_mid_backlog_and_leaves_again(
    kafka_bootstrap, unique_name, tmp_path
) -> None:
    env = worker_env(
        kafka_bootstrap, unique_name("join") + ".", unique_name("app"),
        TRACKBONE_MAX_BATCH_RECORDS="50",  # small batches: many of them in flight at each move
    )  # fmt: skip
    lines, expected = scenario(tmp_path, "JL", parcels=600)
    backlog = len(lines) // 3
    Feed(env, kafka_bootstrap, lines[:backlog], pause_s=0).start().join()  # a backlog
    # The rest keeps flowing through both moves (a worker drains the backlog in seconds,
    # so a backlog alone could be gone before the second worker is assigned anything).
    feed = Feed(env, kafka_bootstrap, lines[backlog:], chunk=50, pause_s=0.5)
    first = WorkerProcess(env, tmp_path / "w1").start()
    second = WorkerProcess(env, tmp_path / "w2")
    try:
        wait_for(lambda: events_in(first) > 0, timeout=90, what="the first worker to fold")
        feed.start()
        second.start()  # joins: partitions move to it while input arrives
        wait_for(lambda: events_in(second) > 0, timeout=90, what="the second worker to fold")
        assert second.stop() == 0  # leaves cleanly: its partitions move back
        feed.pause_s = 0
        feed.join()
        settle(env, kafka_bootstrap, expected)
    finally:
        second.kill()
        first.kill()


def test_broker_stopped_and_restarted_mid_stream(unique_name, tmp_path) -> None:
    settings = dataclasses.replace(Settings.from_env(), data_dir=tmp_path / "kafka")
    broker = LocalBroker(settings)
    bootstrap = broker.start()
    env = worker_env(bootstrap, unique_name("bounce") + ".", unique_name("app"))
    lines, expected = scenario(tmp_path, "BR")
    worker = WorkerProcess(env, tmp_path / "w").start()
    feed = Feed(env, bootstrap, lines, pause_s=0.3).start()
    try:
        mid_stream(feed, worker)
        pid = (broker.status() or {})["pid"]
        broker.stop()
        assert not pid_alive(pid), "kafka stop returned before the broker exited"
        assert broker.start() == bootstrap  # same address: running clients reconnect
        feed.join()
        assert worker.alive(), worker.tail()
        settle(env, bootstrap, expected)
    finally:
        worker.kill()
        broker.stop()


def test_sink_sigkill_mid_insert_then_restarted(kafka_bootstrap, unique_name, tmp_path) -> None:
    env = worker_env(
        kafka_bootstrap, unique_name("sinkkill") + ".", unique_name("app"),
        TRACKBONE_SINK_FLUSH_S="0.05",  # inserts all the time: the kill lands mid-insert
    )  # fmt: skip
    lines, expected = scenario(tmp_path, "SK")
    sink_dir = tmp_path / "sink"
    sink = SinkProcess(env, sink_dir).start()
    worker = WorkerProcess(env, tmp_path / "w").start()
    feed = Feed(env, kafka_bootstrap, lines, pause_s=0.3).start()
    try:
        mid_stream(feed, worker)
        wait_for(lambda: sink.client.sink_rows() > 0, timeout=60, what="the sink to insert")
        sink.kill()
        sink = SinkProcess(env, sink_dir).start()
        feed.join()
        settle(env, kafka_bootstrap, expected, sink_dir=sink_dir)
        # One row per parcel after FINAL, one per effective event: no row twice.
        (row,) = sink.client.query(
            "SELECT count() AS n, uniqExact(parcel_id) AS parcels FROM parcel_state FINAL"
        )
        assert row["n"] == row["parcels"] == len(expected)
        (row,) = sink.client.query(
            "SELECT count() AS n, uniqExact(parcel_id, event_id) AS events FROM parcel_events FINAL"
        )
        assert row["n"] == row["events"] == sum(p["event_count"] for p in expected.values())
    finally:
        worker.kill()
        sink.kill()


HOLD_ENGINE = textwrap.dedent(
    """
    import dataclasses, sys
    from pathlib import Path
    from streams.clickhouse.client import close_clients, connect
    from streams.settings import Settings
    settings = dataclasses.replace(Settings.from_env(), data_dir=Path(sys.argv[1]))
    connect(settings).command("SELECT 1")
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    close_clients()
    """
)


def test_clickhouse_unavailable_for_a_while(kafka_bootstrap, unique_name, tmp_path) -> None:
    env = worker_env(
        kafka_bootstrap, unique_name("chdown") + ".", unique_name("app"),
        TRACKBONE_SINK_FLUSH_S="0.1",
    )  # fmt: skip
    lines, expected = scenario(tmp_path, "CU")
    sink_dir = tmp_path / "sink"
    sink = SinkProcess(env, sink_dir).start()
    worker = WorkerProcess(env, tmp_path / "w").start()
    feed = Feed(env, kafka_bootstrap, lines, pause_s=0.3).start()
    holder: subprocess.Popen[str] | None = None
    try:
        mid_stream(feed, worker)
        sink.kill()
        # Another process takes the embedded engine: the sink cannot open ClickHouse.
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_ENGINE, str(sink_dir)],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        sink = SinkProcess(env, sink_dir).launch()
        before = events_in(worker)

        def failing() -> bool:
            assert sink.alive(), sink.tail()  # it backs off; it does not exit
            return sink.client.metrics().get("trackbone_sink_restarts_total", 0) >= 2

        wait_for(failing, timeout=60, what="the sink to fail and back off twice")
        assert not sink.client.health()
        # The worker is unaffected: it goes on folding what arrives meanwhile.
        wait_for(lambda: events_in(worker) > before, timeout=60, what="the worker to go on")
        assert holder.stdin is not None
        holder.stdin.close()  # ClickHouse is back
        assert holder.wait(60) == 0
        wait_for(sink.client.health, timeout=90, what="the sink to recover")
        feed.join()
        settle(env, kafka_bootstrap, expected, sink_dir=sink_dir)
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        worker.kill()
        sink.kill()


def test_a_flood_of_bad_input_is_dead_lettered_and_the_good_all_applied(
    kafka_bootstrap, unique_name, tmp_path
) -> None:
    cap = 40
    prefix = unique_name("flood") + "."
    env = worker_env(
        kafka_bootstrap, prefix, unique_name("app"), TRACKBONE_MAX_EVENTS_PER_PARCEL=str(cap)
    )
    mixed = mixed_input.build(parcels=300, seed=9, tag="BF")
    # One parcel over the event cap, all on one topic so that every reader sees one order.
    over = [
        avro_json(scan(f"cap-{i:03d}", i, Scan.ORIGIN_HUB_ARRIVED, pid="BF-CAP"))
        for i in range(cap + 10)
    ]
    lines = mixed.lines + over
    huge = over[0][:-1] + b', "raw_code": "' + b"x" * (2 << 20) + b'"}'
    path = tmp_path / "good.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    folded = subprocess.run(
        [sys.executable, "-m", "streams.cli", "fold", "--input", str(path),
         "--max-events", str(cap)],
        cwd=REPO, capture_output=True, check=True,
    ).stdout  # fmt: skip
    expected = {row["parcel_id"]: row for row in map(_loads, folded.splitlines())}

    settings = Settings.from_env(env)
    scans = settings.topics.scans
    key = b"BF-00001"
    good = avro.encode_event(scan("s-x", 0, Scan.PICKED_UP, pid="BF-00001"))
    rng = random.Random(3)
    hour = 3_600_000
    future = dataclasses.replace(
        scan("s-future", 0, Scan.DELIVERED, pid="BF-00002"),
        event_time=int(time.time() * 1000) + 30 * 24 * hour,
    )
    bad = (
        [(scans, key, bytes(rng.randrange(256) for _ in range(40))) for _ in range(100)]  # garbage
        + [(scans, key, avro.MAGIC + b"\x00" * 8 + good[avro.HEADER_SIZE :])] * 50  # schema
        + [(scans, b"BF-00003", good)] * 50  # key and parcel_id disagree
        + [(scans, b"BF-00002", avro.encode_event(future))] * 20  # a month ahead
        + [(scans, key, b"\x00" * 1_000_000)] * 2  # near the broker's limit: the DLQ keeps it
    )
    worker = WorkerProcess(env, tmp_path / "w").start()
    try:
        asyncio.run(produce_raw(kafka_bootstrap, bad[::2]))
        # The carriers' produce path rejects a record over the size limit and sends the rest.
        huge_file = tmp_path / "huge.jsonl"
        huge_file.write_bytes(huge + b"\n" + over[0] + b"\n")
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", "produce", "--input", str(huge_file)],
            cwd=REPO, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert "line 1:" in result.stderr and "too large" in result.stderr, result.stderr
        assert "sent 1, rejected 1" in result.stdout, result.stdout
        feed = Feed(env, kafka_bootstrap, lines, pause_s=0.05).start()
        asyncio.run(produce_raw(kafka_bootstrap, bad[1::2]))
        feed.join()
        report = settle(env, kafka_bootstrap, expected)
        reasons = report["dead_by_reason"]
        assert reasons.get("over_cap") == 10
        assert reasons.get("future") == 20
        assert reasons.get("conflict", 0) >= mixed.conflicts > 0
        assert reasons.get("invalid", 0) >= 100 + 50 + 50 + 2
        assert worker.alive(), worker.tail()
    finally:
        worker.kill()


def test_a_duplicate_storm_changes_nothing(kafka_bootstrap, unique_name, tmp_path) -> None:
    env = worker_env(kafka_bootstrap, unique_name("storm") + ".", unique_name("app"))
    lines, expected = scenario(tmp_path, "DS")
    storm = lines * 3
    random.Random(1).shuffle(storm)  # every event three times, out of order
    worker = WorkerProcess(env, tmp_path / "w").start()
    try:
        Feed(env, kafka_bootstrap, storm, pause_s=0.05).start().join()
        report = settle(env, kafka_bootstrap, expected)
        assert report["duplicates"] >= 2 * report["applied"]
    finally:
        worker.kill()


def avro_json(event) -> bytes:
    from projections.jsonform import event_to_json

    return _dumps(event_to_json(event))


def _dumps(value) -> bytes:
    import orjson

    return orjson.dumps(value)


def _loads(line: bytes):
    import orjson

    return orjson.loads(line)
