"""Events in -> ClickHouse out, through a real worker, sink service, broker and embedded engine."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path

import pytest

from tests import mixed_input
from tests.harness import SinkProcess, WorkerProcess, wait_for, worker_env
from tests.integration.test_worker_end_to_end import FOLD_FIELDS, expected_fold, produce_file

pytestmark = pytest.mark.integration


def query(sink: SinkProcess, sql: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        sink.url + "/query",
        data=json.dumps({"sql": sql, "params": {}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def rows(sink: SinkProcess, sql: str) -> list[dict]:
    status, body = query(sink, sql)
    assert status == 200, body
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def as_fold_json(row: dict) -> dict:
    """ClickHouse row -> the shape of `trackbone fold` output (times as instants)."""
    out = {}
    for field in FOLD_FIELDS:
        value = row[field]
        if field in ("delivered_at", "last_event_time") and value is not None:
            value = value.replace(" ", "T").replace("+00:00", "")
            value = value.rstrip("Z")
            if "." not in value:
                value += ".000"
            value = value[:23] + "Z"
        if field == "holds":
            value = sorted(value)
        if field == "registered":
            value = bool(value)
        out[field] = value
    return out


async def test_parcel_state_final_equals_fold_and_events_are_effective(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("ch") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"), TRACKBONE_SINK_FLUSH_S="0.2")
    mixed = mixed_input.build(parcels=120, seed=21, tag="CH")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    expected = expected_fold(path)
    produce_file(env, path)
    sink = SinkProcess(env, tmp_path / "sink").start()
    worker = WorkerProcess(env, tmp_path / "w").start()
    try:
        want = {p: {f: v[f] for f in FOLD_FIELDS} for p, v in expected.items()}
        total_effective = sum(row["event_count"] for row in expected.values())
        # The sink reads the status topic and the event-delta topic independently, so
        # parcel_events can be complete while parcel_state still shows older versions:
        # wait for the state itself, then assert on the last snapshot (for its diff).
        seen: dict[str, dict] = {}

        def caught_up() -> bool:
            (row,) = rows(sink, "SELECT count() AS events FROM parcel_events FINAL")
            seen.clear()
            seen.update(
                (r["parcel_id"], as_fold_json(r))
                for r in rows(sink, "SELECT * FROM parcel_state FINAL ORDER BY parcel_id")
            )
            return row["events"] == total_effective and seen == want

        with contextlib.suppress(AssertionError):
            wait_for(caught_up, timeout=120, what="ClickHouse to hold the folded state")
        state = dict(seen)
        assert state == want
        per_parcel = {
            r["parcel_id"]: r["n"]
            for r in rows(
                sink, "SELECT parcel_id, count() AS n FROM parcel_events FINAL GROUP BY parcel_id"
            )
        }
        assert per_parcel == {p: v["event_count"] for p, v in expected.items()}

        refused, body = query(sink, "DROP TABLE parcel_state")
        assert refused == 400, body
        assert rows(sink, "SELECT count() AS n FROM parcel_state FINAL")[0]["n"] == len(expected)
    finally:
        worker.stop()
        sink.stop()
