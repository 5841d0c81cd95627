"""Stuck parcels: silent for too long in stream time -> one PARCEL_STUCK alert, from a timer."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.harness import WorkerProcess, read_topic, worker_env
from tests.integration.test_eta_stream import BASE, HOUR, ids_on, write
from tests.integration.test_worker_end_to_end import produce_file

pytestmark = pytest.mark.integration


def registration(pid: str, at: int) -> dict:
    return {
        "type": "ParcelRegistered",
        "event_id": f"{pid}-r",
        "parcel_id": pid,
        "event_time": at,
        "source": "t",
        "merchant_id": "m",
        "origin": {"country": "CN", "city": "Hangzhou"},
        "destination": {"country": "FR", "city": None},
        "service": "ECONOMY",
    }


async def test_silent_parcel_raises_one_stuck_alert(
    kafka_bootstrap: str, unique_name, tmp_path: Path
) -> None:
    prefix = unique_name("stuck") + "."
    env = worker_env(
        kafka_bootstrap,
        prefix,
        unique_name("app"),
        TRACKBONE_STUCK_AFTER_HOURS="6",
        TRACKBONE_STUCK_CHECK_INTERVAL_S="1",
    )
    silent = ids_on(0, "SILENT", 1)[0]
    busy = [ids_on(p, f"BUSY{p}-", 1)[0] for p in range(8)]  # stream time moves on everywhere
    events = [registration(silent, BASE)] + [registration(b, BASE + 10 * HOUR) for b in busy]
    produce_file(env, write(tmp_path / "in.jsonl", events))
    worker = WorkerProcess(env, tmp_path / "w").start()
    try:

        def stuck(records) -> list[dict]:
            return [
                a
                for a in map(lambda r: orjson.loads(r.value), records)
                if a["alert"] == "PARCEL_STUCK"
            ]

        records = await read_topic(
            kafka_bootstrap,
            f"{prefix}tracking.alerts",
            done=lambda r: len(stuck(r)) >= 1,
            timeout=60,
        )
        alerts = stuck(records)
        assert [a["parcel_id"] for a in alerts] == [silent]
        assert alerts[0]["last_event_at"] == "2026-11-11T00:00:00.000Z"
        # The timer keeps running; the same silence is not reported twice.
        again = await read_topic(
            kafka_bootstrap, f"{prefix}tracking.alerts", done=lambda r: len(stuck(r)) > 1, timeout=4
        )
        assert len(stuck(again)) == 1
    finally:
        worker.stop()
