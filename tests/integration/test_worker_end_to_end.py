"""A real worker on the real broker: final states equal the fold, nothing is lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from load.demo import committed_all
from load.worker_process import REPO
from streams.avro import decode_status
from streams.settings import Settings
from streams.status import status_to_json
from tests import mixed_input
from tests.harness import WorkerProcess, http_get, produce_raw, read_topic, worker_env

pytestmark = pytest.mark.integration

FOLD_FIELDS = (
    "milestone",
    "delivered_at",
    "holds",
    "attempts",
    "event_count",
    "custodian",
    "registered",
    "last_event_time",
)


def expected_fold(path: Path) -> dict[str, dict]:
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "fold", "--input", str(path)],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return {row["parcel_id"]: row for row in map(orjson.loads, out.splitlines())}


def produce_file(env: dict[str, str], path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce", "--input", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stderr + result.stdout


def latest_statuses(records) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for rec in records:
        if rec.value is None:  # tombstone: every event of the parcel was voided
            latest.pop(rec.key.decode(), None)
            continue
        status = status_to_json(decode_status(rec.value))
        prev = latest.get(status["parcel_id"])
        if prev is None or status["version"] >= prev["version"]:
            latest[status["parcel_id"]] = status
    return latest


def matches(latest: dict[str, dict], expected: dict[str, dict]) -> bool:
    if latest.keys() != expected.keys():
        return False
    return all(
        {f: latest[p][f] for f in FOLD_FIELDS} == {f: expected[p][f] for f in FOLD_FIELDS}
        for p in expected
    )


def diff(latest: dict[str, dict], expected: dict[str, dict]) -> list[str]:
    problems = [f"missing {p}" for p in expected.keys() - latest.keys()]
    problems += [f"unexpected {p}" for p in latest.keys() - expected.keys()]
    for p in expected.keys() & latest.keys():
        for f in FOLD_FIELDS:
            if latest[p][f] != expected[p][f]:
                problems.append(f"{p}.{f}: stream {latest[p][f]!r} != fold {expected[p][f]!r}")
    return problems[:20]


async def test_worker_matches_fold_and_accounts_for_every_input(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("e2e") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"))
    mixed = mixed_input.build(parcels=60, seed=7, tag="E2E")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    expected = expected_fold(path)

    summary = produce_file(env, path)
    assert f"rejected {mixed.invalid_lines}" in summary
    garbage = [
        (f"{prefix}tracking.scans", b"E2E-00001", b"\x00\x01garbage"),
        (f"{prefix}tracking.scans", b"E2E-00002", b"\xc3\x01" + b"\x00" * 8 + b"body"),
        (f"{prefix}tracking.customs", None, b""),
    ]
    await produce_raw(kafka_bootstrap, garbage)
    sent = len(mixed.lines) - mixed.invalid_lines + len(garbage)

    worker = WorkerProcess(env, tmp_path / "w1").start()
    try:
        status_topic = f"{prefix}tracking.parcel-status"
        records = await read_topic(
            kafka_bootstrap,
            status_topic,
            done=lambda recs: matches(latest_statuses(recs), expected),
            timeout=120,
        )
        latest = latest_statuses(records)
        assert matches(latest, expected), diff(latest, expected)

        dead = await read_topic(
            kafka_bootstrap,
            f"{prefix}tracking.dead-letter",
            done=lambda recs: len(recs) >= len(garbage) + mixed.conflicts,
            timeout=60,
        )
        reasons = [dict(r.headers)["reason"].decode() for r in dead]
        assert len(dead) == len(garbage) + mixed.conflicts, reasons
        assert sum(r.startswith("conflict") for r in reasons) == mixed.conflicts
        assert sum(r.startswith("invalid") for r in reasons) == len(garbage)
        assert {r.value for r in dead} >= {g[2] for g in garbage}
        for r in dead:
            headers = dict(r.headers)
            assert headers["source_topic"].decode().startswith(prefix)
            assert int(headers["source_offset"]) >= 0

        m = worker.metrics()
        assert m["trackbone_events_in_total"] == sent
        assert (
            m["trackbone_events_in_total"]
            == m["trackbone_events_applied_total"]
            + m["trackbone_events_duplicate_total"]
            + m["trackbone_events_dead_lettered_total"]
        )
        assert m["trackbone_events_duplicate_total"] == mixed.duplicates

        some = sorted(expected)[3]
        status, body = http_get(f"{worker.url}/parcels/{some}")
        assert status == 200, body
        assert body["milestone"] == expected[some]["milestone"]
        assert len(body["timeline"]) == expected[some]["event_count"]
        assert http_get(f"{worker.url}/parcels/NOPE-404")[0] == 404
        assert http_get(f"{worker.url}/parcels/bad%20id!")[0] == 400

        # Record batches commit like single records: every input offset, to the end.
        inputs = list(Settings(topic_prefix=prefix).topics.inputs)
        deadline = time.monotonic() + 60
        while not await committed_all(kafka_bootstrap, env["TRACKBONE_APP_ID"], inputs):
            assert time.monotonic() < deadline, "the worker never committed every input offset"
            await asyncio.sleep(0.2)  # poll interval of a deadline-bounded wait
    finally:
        worker.stop()
