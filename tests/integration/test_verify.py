"""`trackbone verify` on a real run: 0 when all agree, 1 on a corrupted row or a lost status."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from load.worker_process import REPO
from tests import mixed_input
from tests.harness import SinkProcess, WorkerProcess, wait_for, worker_env
from tests.integration.test_worker_end_to_end import expected_fold, produce_file

pytestmark = pytest.mark.integration


def verify(env: dict[str, str], data_dir: Path, *extra: str) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "verify", "--json", "--data-dir", str(data_dir),
         *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.stdout, result.stderr
    return result.returncode, orjson.loads(result.stdout)


def corrupt_one_version(env: dict[str, str], data_dir: Path, parcel_id: str) -> None:
    """Write a newer version of one parcel's row straight into the embedded engine."""
    script = textwrap.dedent(
        f"""
        import dataclasses
        from pathlib import Path
        from streams.clickhouse.client import close_clients, connect
        from streams.settings import Settings
        settings = dataclasses.replace(Settings.from_env(), data_dir=Path({str(data_dir)!r}))
        client = connect(settings)
        client.command(
            "INSERT INTO parcel_state SELECT * REPLACE (version + 100 AS version) "
            "FROM parcel_state FINAL WHERE parcel_id = {{p:String}}",
            parameters={{"p": {parcel_id!r}}},
        )
        close_clients()
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, check=True, timeout=120)


async def test_verify_agrees_on_a_clean_run_and_names_what_was_corrupted(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaProducer

    prefix = unique_name("verify") + "."
    env = worker_env(kafka_bootstrap, prefix, unique_name("app"), TRACKBONE_SINK_FLUSH_S="0.2")
    mixed = mixed_input.build(parcels=80, seed=5, tag="VF")
    path = mixed_input.write(tmp_path / "mixed.jsonl", mixed)
    expected = expected_fold(path)
    produce_file(env, path)
    sink_dir = tmp_path / "sink"
    sink = SinkProcess(env, sink_dir).start()
    worker = WorkerProcess(env, tmp_path / "w").start()
    try:
        clean: dict = {}

        def settled() -> bool:
            code, report = verify(env, sink_dir)
            clean.update(report)
            assert code in (0, 11), report["problems"]  # behind while it drains, never a mismatch
            return code == 0

        wait_for(settled, timeout=180, what="verify to report that everything agrees")
    finally:
        worker.stop()
        sink.stop()

    assert clean["ok"] is True
    assert clean["problems"] == [] and clean["behind"] == []
    assert clean["parcels"] == len(expected)
    assert clean["clickhouse_parcels"] == len(expected)
    assert clean["events_in"] == clean["applied"] + clean["duplicates"] + clean["dead_lettered"]
    assert clean["dead_lettered"] >= mixed.conflicts > 0
    assert clean["dead_by_reason"] == clean["dead_letter_topic_by_reason"]
    assert all(row["lag"] == 0 for row in clean["compared_at"])

    # A row in ClickHouse that no status says: a mismatch, with the parcel named.
    victim = sorted(expected)[0]
    corrupt_one_version(env, sink_dir, victim)
    code, report = verify(env, sink_dir)
    assert code == 1
    (finding,) = report["problems"]
    assert finding["what"] == "ClickHouse version newer than the status topic"
    assert finding["sample"] == [victim]

    # A parcel whose latest status is gone (a tombstone where its events say it lives).
    lost = sorted(expected)[1]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(f"{prefix}tracking.parcel-status", key=lost.encode())
    finally:
        await producer.stop()
    code, report = await asyncio.to_thread(verify, env, sink_dir, "--no-clickhouse")
    assert code == 1
    (finding,) = report["problems"]
    assert finding["what"] == "status missing (committed, yet no status)"
    assert finding["sample"] == [lost]


def test_input_nobody_has_committed_yet_is_behind_not_a_mismatch(
    kafka_bootstrap, unique_name, tmp_path
) -> None:
    # A partition without a committed offset promises nothing: the reference must not
    # fold it (it once folded all of it, and called every status "older" or "missing").
    env = worker_env(kafka_bootstrap, unique_name("uncommitted") + ".", unique_name("app"))
    mixed = mixed_input.build(parcels=20, seed=3, tag="UC")
    path = mixed_input.write(tmp_path / "input.jsonl", mixed)
    produce_file(env, path)
    code, report = verify(env, tmp_path / "none", "--no-clickhouse")
    assert code == 11, report["problems"]  # behind: no worker yet
    assert report["problems"] == [] and report["events_in"] == 0
